"""The scenarios of the nightly tests, one module per test; importing this package
imports every module here, and each registers itself with the runner by test id."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
