"""The code location: one Definitions object, imports only."""

import dagster as dg

from nightly_pipeline.assets.engine import engine_selfcheck, engine_selfcheck_job
from nightly_pipeline.resources import MetricStoreResource

defs = dg.Definitions(
    assets=[engine_selfcheck],
    jobs=[engine_selfcheck_job],
    resources={"store": MetricStoreResource()},
)
