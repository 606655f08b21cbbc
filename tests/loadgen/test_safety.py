"""check_target: loopback-only unless allowed by name (DESIGN.md §8). No traffic is sent."""

import pytest

from nightly_pipeline.loadgen.errors import ConfigError, LoadgenError, TargetNotAllowedError
from nightly_pipeline.loadgen.safety import check_target, host_of, resolve_target


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]:8080",
        "::ffff:127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "localhost:8080",
        "http://127.0.0.1:9/x?y=1",
        "http://localhost:8080",
        "ws://[::1]:9000/echo",
    ],
)
def test_loopback_targets_are_allowed(target):
    check_target(target)


@pytest.mark.parametrize(
    "target",
    [
        "10.1.2.3",
        "http://10.1.2.3:80/",
        "192.168.1.1:80",
        "8.8.8.8",
        "0.0.0.0",
        "::",
        "[2001:db8::1]:443",
        "::ffff:10.0.0.1",
        "ws://10.1.2.3/echo",
    ],
)
def test_non_loopback_targets_are_refused(target):
    with pytest.raises(TargetNotAllowedError):
        check_target(target)


def test_refusal_message_names_host_addresses_and_fix():
    with pytest.raises(TargetNotAllowedError) as info:
        check_target("http://10.1.2.3:8080/api")
    message = str(info.value)
    assert "'10.1.2.3'" in message
    assert "resolves to 10.1.2.3" in message
    assert "add it to allow_hosts in the target config" in message
    assert info.value.host == "10.1.2.3"
    assert info.value.addresses == ("10.1.2.3",)
    assert isinstance(info.value, LoadgenError)


@pytest.mark.parametrize(
    "target, allow_hosts",
    [
        ("http://10.1.2.3:8080", ["10.1.2.3"]),
        ("10.1.2.3", ["http://10.1.2.3:1234/"]),
        ("http://Load-Target.Internal:80/x", ["load-target.internal"]),  # not resolved
        ("[2001:db8::1]:443", ["2001:db8::1"]),
    ],
)
def test_allow_hosts_admits_a_named_host(target, allow_hosts):
    check_target(target, allow_hosts)
    assert resolve_target(target, allow_hosts) == ()


def test_allow_hosts_does_not_admit_other_hosts():
    with pytest.raises(TargetNotAllowedError):
        check_target("10.1.2.4", ["10.1.2.3"])


def test_resolve_target_returns_the_verified_loopback_addresses():
    assert resolve_target("http://127.0.0.1:80") == ("127.0.0.1",)
    addresses = resolve_target("localhost")
    assert addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}


@pytest.mark.parametrize(
    "text, host",
    [
        ("http://User@Example.COM:80/p", "example.com"),
        ("[::1]:80", "::1"),
        ("::1", "::1"),
        ("host.example:443", "host.example"),
        ("host.example.", "host.example"),
        (" 127.0.0.1 ", "127.0.0.1"),
    ],
)
def test_host_of(text, host):
    assert host_of(text) == host


@pytest.mark.parametrize("text", ["", "http://", "http://:80/x", "[", "http://[::1/x"])
def test_no_host_is_a_config_error(text):
    with pytest.raises(ConfigError):
        check_target(text)
