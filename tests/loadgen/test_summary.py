"""summary_export: the shape of k6 v1.1.0's --summary-export file, checked on a real one.

The fixture fixtures/k6-v1.1.0-summary-export.json was written by the real k6 binary
running fixtures/k6-v1.1.0-summary-export.js against a loopback HTTP server. Regenerate
it with ``python tests/loadgen/test_summary.py``; the slow test re-runs k6 and checks
that the fixture's shape still matches the binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.summary import summary_export, write_summary
from nightly_pipeline.loadgen.thresholds import ThresholdEvaluator, parse_thresholds

FIXTURES = Path(__file__).parent / "fixtures"
K6_VERSION = "v1.1.0"
FIXTURE = FIXTURES / f"k6-{K6_VERSION}-summary-export.json"
SCRIPT = FIXTURES / f"k6-{K6_VERSION}-summary-export.js"
K6 = Path(sys.prefix) / "bin" / "k6"
T0 = 100.0

# the same thresholds as the k6 script
SPEC = {
    "http_req_duration": ["p(95)<5000"],
    "http_req_duration{name:login}": ["p(99)<5000", "max<0"],
    "http_req_failed": ["rate<0.5"],
    "my_trend": ["avg<0", "p(99.9)<1000"],
    "my_counter": ["count>0"],
    "my_rate": ["rate>0.1"],
    "my_gauge": ["value>0"],
}


# ------------------------------------------------------------------ shape helpers
def _kind(entry: dict[str, Any]) -> str:
    keys = set(entry) - {"thresholds"}
    if "avg" in keys or "med" in keys:
        return "trend"
    if "passes" in keys:
        return "rate"
    if "count" in keys:
        return "counter"
    return "gauge"


def _shape(x: Any) -> Any:
    """Structure with leaves replaced by JSON type names (int and float are "number")."""
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return [_shape(v) for v in x[:1]]
    assert isinstance(x, dict), type(x)
    return {k: _shape(v) for k, v in x.items()}


def _group_shape(group: dict[str, Any]) -> dict[str, Any]:
    """A group's keys; children (keyed by user-chosen names) collapse to one shape each."""
    out = {k: _shape(v) for k, v in group.items() if k not in ("groups", "checks")}
    groups, checks = list(group["groups"].values()), list(group["checks"].values())
    out["groups"] = {"<group>": _group_shape(groups[0])} if groups else {}
    out["checks"] = {"<check>": _shape(checks[0])} if checks else {}
    return out


def export_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """Metrics collapse to one shape per kind (submetrics separately), thresholds included."""
    metrics: dict[str, Any] = {}
    for name, entry in doc["metrics"].items():
        kind = _kind(entry) + ("{submetric}" if "{" in name else "")
        shape = {k: _shape(v) for k, v in entry.items() if k != "thresholds"}
        assert metrics.setdefault(kind, shape) == shape, f"{name} differs from other {kind}s"
        for expr, failed in entry.get("thresholds", {}).items():
            assert isinstance(expr, str) and isinstance(failed, bool), (name, expr)
    return {
        "top": sorted(doc),
        "metrics": {k: sorted(v.items()) for k, v in metrics.items()},
        "thresholded_kinds": sorted(_kind(e) for e in doc["metrics"].values() if "thresholds" in e),
        "root_group": _group_shape(doc["root_group"]),
    }


# ------------------------------------------------------------------ our export
def _our_export() -> dict[str, Any]:
    """A run recorded like the k6 script: 4 iterations, 1 VU."""
    rec = Recorder(T0)
    for it in range(4):
        at = T0 + it * 0.25
        ok = {"expected_response": "true"}
        rec.trend("http_req_duration", 1.2 + it, at, {"name": "login", "status": "200"} | ok)
        rec.rate("http_req_failed", False, at, {"name": "login"})
        rec.rate("checks", True, at, {"check": "status is 200", "group": "::login group"})
        expected = {"expected_response": "false" if it == 0 else "true"}
        rec.trend(
            "http_req_duration", 0.8, at + 0.01, {"status": "500" if it == 0 else "200"} | expected
        )
        rec.rate("http_req_failed", it == 0, at + 0.01)
        rec.counter("http_reqs", at, 2.0)
        rec.rate("checks", False, at + 0.02, {"check": "always false"})
        rec.trend("my_trend", 12.5, at + 0.02)
        rec.counter("my_counter", at + 0.02, 2.0)
        rec.rate("my_rate", True, at + 0.02)
        rec.rate("my_rate", False, at + 0.02)
        rec.gauge("my_gauge", 42.0, at + 0.02)
        rec.counter("iterations", at + 0.03)
    rec.close_all(now=T0 + 1.0)
    results = ThresholdEvaluator(parse_thresholds(SPEC), rec).final()
    return summary_export(rec, results)


def test_export_has_the_shape_of_the_real_k6_file() -> None:
    ref = json.loads(FIXTURE.read_text())
    ours = _our_export()
    assert export_shape(ours) == export_shape(ref)


def test_threshold_boolean_means_failed_like_k6() -> None:
    ref = json.loads(FIXTURE.read_text())["metrics"]
    ours = _our_export()["metrics"]
    # k6 wrote true for the crossed thresholds (avg=12.5 is not < 0; max is not < 0)
    for metric, expected in [
        ("my_trend", {"avg<0": True, "p(99.9)<1000": False}),
        ("http_req_duration{name:login}", {"p(99)<5000": False, "max<0": True}),
        ("http_req_failed", {"rate<0.5": False}),
        ("my_gauge", {"value>0": False}),
    ]:
        assert ref[metric]["thresholds"] == expected
        assert ours[metric]["thresholds"] == expected


def test_export_values() -> None:
    doc = _our_export()
    m = doc["metrics"]
    assert m["my_trend"] == {k: 12.5 for k in ("avg", "min", "med", "max", "p(90)", "p(95)")} | {
        "thresholds": {"avg<0": True, "p(99.9)<1000": False}
    }
    assert m["my_rate"] == {
        "passes": 4,
        "fails": 4,
        "value": 0.5,
        "thresholds": {"rate>0.1": False},
    }
    assert m["my_counter"]["count"] == 8 and m["my_counter"]["rate"] == 8.0
    assert m["my_gauge"] == {"value": 42, "min": 42, "max": 42, "thresholds": {"value>0": False}}
    assert m["http_req_duration{name:login}"]["max"] == 4.2
    assert m["http_req_duration{expected_response:true}"]["min"] == 0.8  # 7 of 8 requests
    group = doc["root_group"]["groups"]["login group"]
    assert group["id"] == "c12f87c3ff917a9cc048016e7009315d"  # md5("::login group"), as k6
    assert group["checks"]["status is 200"]["passes"] == 4
    assert doc["root_group"]["checks"]["always false"]["fails"] == 4


def test_custom_trend_stats_and_empty_metrics() -> None:
    rec = Recorder(T0)
    rec.declare("lat", "trend")
    rec.trend("other", 5.0, T0)
    rec.close_all()
    doc = summary_export(rec, [], trend_stats=("count", "p(99.9)", "avg"))
    assert doc["metrics"]["lat"] == {"count": 0, "p(99.9)": 0, "avg": 0}  # k6 writes zeros
    assert doc["metrics"]["other"] == {"count": 1, "p(99.9)": 5.0, "avg": 5.0}


def test_write_summary_writes_strict_json(tmp_path: Path) -> None:
    rec = Recorder(T0)
    rec.declare("lat", "trend")  # NaN stats must not leak into the file
    rec.close_all()
    results = ThresholdEvaluator(parse_thresholds({"lat": ["p(95)<1"]}), rec).final()
    doc = write_summary(tmp_path / "summary.json", rec, results)
    text = (tmp_path / "summary.json").read_text()
    assert json.loads(text) == doc and "NaN" not in text
    assert doc["metrics"]["lat"]["thresholds"] == {"p(95)<1": True}


def test_threshold_on_a_builtin_without_samples_is_written_with_zeros() -> None:
    rec = Recorder(T0)
    rec.close_all()
    results = ThresholdEvaluator(parse_thresholds({"http_req_failed": ["rate<0.01"]}), rec).final()
    doc = summary_export(rec, results)
    assert doc["metrics"]["http_req_failed"] == {
        "passes": 0,
        "fails": 0,
        "value": 0,
        "thresholds": {"rate<0.01": True},  # no samples: failed (k6 would pass it)
    }


# ------------------------------------------------------------------ the real binary
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path.startswith("/fail") else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _loopback_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="k6-fixture-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_k6_reference(workdir: Path) -> Path:
    """Run the reference script with the real k6 against a loopback server; the export's path."""
    out = workdir / "summary.json"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "K6_NO_USAGE_REPORT": "true"}
    with _loopback_server() as base:
        proc = subprocess.run(
            [
                str(K6),
                "run",
                "--quiet",
                "--no-usage-report",
                "--summary-export",
                str(out),
                "-e",
                f"BASE={base}",
                str(SCRIPT),
            ],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 99, proc.stderr  # 99 = some thresholds crossed (by design)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not K6.exists() and not shutil.which("k6"), reason="no k6 binary")
def test_fixture_still_matches_the_k6_binary(tmp_path: Path) -> None:
    version = subprocess.run([str(K6), "version"], capture_output=True, text=True, check=True)
    if K6_VERSION not in version.stdout:
        pytest.skip(f"k6 is {version.stdout.strip()}, the fixture is {K6_VERSION}")
    fresh = json.loads(run_k6_reference(tmp_path).read_text())
    assert export_shape(fresh) == export_shape(json.loads(FIXTURE.read_text()))
    assert fresh["metrics"]["my_trend"]["thresholds"] == {"avg<0": True, "p(99.9)<1000": False}


if __name__ == "__main__":  # regenerate the fixture
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(run_k6_reference(Path(d)), FIXTURE)  # k6's bytes, unchanged
    print(f"wrote {FIXTURE}")
