"""The load engine: open- and closed-model executors, HTTP/WS clients, recording,
k6-syntax thresholds and k6-compatible summaries. Usable without Dagster.

    from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load
    from nightly_pipeline.loadgen.scenario import GetPath

    result = run_load(LoadTest(
        ConstantArrivalRate(rate=500, bounds=RunBounds(duration_s=30), max_vus=200),
        GetPath("/"), "http://127.0.0.1:8080",
        thresholds={"http_req_duration": ["p(95)<100"], "http_req_failed": ["rate<0.001"]},
    ))
"""

from nightly_pipeline.loadgen.errors import ConfigError, LoadgenError, TargetNotAllowedError
from nightly_pipeline.loadgen.executors import (
    REGISTRY,
    ConstantArrivalRate,
    ConstantVus,
    RampingArrivalRate,
    RunBounds,
    Stage,
)
from nightly_pipeline.loadgen.http_client import HttpClient, HttpResponse
from nightly_pipeline.loadgen.recorder import MetricKey, Recorder, SecondSnapshot, Tags
from nightly_pipeline.loadgen.runner import (
    HttpSettings,
    LoadResult,
    LoadTest,
    Progress,
    run_load,
)
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.loadgen.scenario import GetPath, Scenario
from nightly_pipeline.loadgen.summary import summary_export, write_summary
from nightly_pipeline.loadgen.thresholds import (
    GRAMMAR,
    ThresholdError,
    ThresholdResult,
    ThresholdSyntaxError,
    parse_thresholds,
)
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.loadgen.ws_client import WsSession, ws_connect

__all__ = [
    "GRAMMAR",
    "REGISTRY",
    "ConfigError",
    "ConstantArrivalRate",
    "ConstantVus",
    "GetPath",
    "HttpClient",
    "HttpResponse",
    "HttpSettings",
    "LoadResult",
    "LoadTest",
    "LoadgenError",
    "MetricKey",
    "Progress",
    "RampingArrivalRate",
    "Recorder",
    "RunBounds",
    "Scenario",
    "SecondSnapshot",
    "Stage",
    "Tags",
    "TargetNotAllowedError",
    "ThresholdError",
    "ThresholdResult",
    "ThresholdSyntaxError",
    "Vu",
    "WsSession",
    "check_target",
    "parse_thresholds",
    "run_load",
    "summary_export",
    "write_summary",
    "ws_connect",
]
