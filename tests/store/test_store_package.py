"""The package's public surface, and its promise not to need Dagster."""

from __future__ import annotations

import subprocess
import sys

import nightly_pipeline.store as store_package


def test_public_surface_is_exported() -> None:
    for name in store_package.__all__:
        assert hasattr(store_package, name), name
    assert {"MetricStore", "TestResultRecord", "StoreError"} <= set(store_package.__all__)


def test_error_hierarchy() -> None:
    for name in (
        "StoreBusyError",
        "StoreSchemaTooNewError",
        "StoreCorruptError",
        "StoreWriteError",
        "RunNotFoundError",
    ):
        assert issubclass(getattr(store_package, name), store_package.StoreError), name


def test_store_does_not_import_dagster() -> None:
    code = "import sys, nightly_pipeline.store; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
