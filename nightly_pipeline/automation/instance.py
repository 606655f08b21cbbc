"""The one Dagster instance of a home (``$NIGHTLY_HOME/dagster``): ``nightly run`` records
its runs there and ``nightly ui`` (``make dagster-dev``) serves it, so the UI shows every
run, materialisation and check result of the command line."""

from importlib import resources
from pathlib import Path

import dagster as dg

from nightly_pipeline.home import Home

LOCATION_NAME = "nightly_pipeline"
"""The code location's name, as the project's ``workspace.yaml`` gives it: schedule and
sensor state is kept per location name, so ``nightly ui`` and ``dagster schedule start
-w workspace.yaml`` must agree on it (``dagster dev -m MODULE`` would name it MODULE)."""
WORKSPACE = f"""# Written by `nightly ui` at each start: the project's workspace.yaml.
load_from:
  - python_module:
      module_name: nightly_pipeline.definitions
      location_name: {LOCATION_NAME}
"""
TEMPLATE = "dagster.yaml"
"""The instance settings shipped with the package (run monitoring, pools, run retries)."""


def prepare_instance_dir(home: Home) -> Path:
    """``home.dagster`` with a ``dagster.yaml``: the package's template the first time;
    an existing one (a user's edits) is kept."""
    home.dagster.mkdir(parents=True, exist_ok=True)
    config = home.dagster / "dagster.yaml"
    if not config.exists():
        template = resources.files("nightly_pipeline.automation") / TEMPLATE
        config.write_text(template.read_text())
    return home.dagster


def write_workspace(home: Home) -> Path:
    """The workspace file ``nightly ui`` serves, in the home's instance directory."""
    path = prepare_instance_dir(home) / "workspace.yaml"
    path.write_text(WORKSPACE)
    return path


def open_instance(home: Home) -> dg.DagsterInstance:
    """The home's instance (close it, or use it in a ``with``)."""
    return dg.DagsterInstance.from_config(str(prepare_instance_dir(home)))
