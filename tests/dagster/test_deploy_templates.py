"""The shipped templates for Dagster's Docker and Kubernetes executors and run launchers
(``deploy/docker``, ``deploy/k8s``) against Dagster's own config schemas: the run config
against ``nightly_suite`` on that executor (``dagster.validate_run_config``: the executor's
``config_schema`` and our resources' alike), the instance snippet merged into the
package's ``dagster.yaml`` against the instance schema (``dagster_instance_config``, what
loading the instance runs) and its ``run_launcher`` config against the launcher class's
``config_type()``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config  # the schema check Dagster itself runs
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer
from dagster_docker import DockerRunLauncher, docker_executor
from dagster_k8s import K8sRunLauncher, k8s_job_executor

import nightly_pipeline
from nightly_pipeline.automation.dagster_adapter import with_executor
from nightly_pipeline.automation.jobs import nightly_suite_job
from nightly_pipeline.definitions import defs

DEPLOY = Path(nightly_pipeline.__file__).resolve().parents[1] / "deploy"
EXECUTORS = {"docker": docker_executor, "k8s": k8s_job_executor}
LAUNCHERS = {"docker": DockerRunLauncher, "k8s": K8sRunLauncher}
KINDS = sorted(EXECUTORS)


def _yaml(kind: str, name: str) -> dict:
    return yaml.safe_load((DEPLOY / kind / name).read_text())


def _suite_on(kind: str) -> dg.JobDefinition:
    return with_executor(defs.resolve_job_def(nightly_suite_job.name), EXECUTORS[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_run_config_template_is_valid_for_the_suite_on_its_executor(kind: str) -> None:
    run_config = _yaml(kind, "run_config.yaml")
    dg.validate_run_config(_suite_on(kind), run_config)  # raises with every error
    schema = EXECUTORS[kind].config_schema.config_type
    assert process_config(schema, run_config["execution"]["config"]).success


@pytest.mark.parametrize("kind", KINDS)
def test_a_misspelt_run_config_template_is_refused(kind: str) -> None:
    """The validation above can fail: one key misspelt, and it names it."""
    run_config = _yaml(kind, "run_config.yaml")
    run_config["execution"]["config"]["max_concurent"] = 1
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(_suite_on(kind), run_config)


@pytest.mark.parametrize("kind", KINDS)
def test_instance_template_is_valid_for_its_run_launcher(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippet = _yaml(kind, "dagster.yaml")
    template = resources.files("nightly_pipeline.automation") / "dagster.yaml"
    merged = {**yaml.safe_load(template.read_text()), **snippet}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(merged))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", "dagster")  # the k8s snippet's env sources
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "secret")
    config, _ = dagster_instance_config(str(tmp_path))  # raises with every error
    launcher = config["run_launcher"]
    cls = class_from_code_pointer(launcher["module"], launcher["class"])
    assert cls is LAUNCHERS[kind]
    result = process_config(cls.config_type(), launcher["config"])
    assert result.success, [e.message for e in result.errors or []]


@pytest.mark.parametrize("kind", KINDS)
def test_a_misspelt_launcher_template_is_refused(kind: str) -> None:
    config = _yaml(kind, "dagster.yaml")["run_launcher"]["config"]
    config["netwrk"] = "nightly"
    result = process_config(LAUNCHERS[kind].config_type(), config)
    assert not result.success
    assert any("netwrk" in e.message for e in result.errors or [])
