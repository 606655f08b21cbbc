"""Which failures of a test are worth another attempt, decided here and nowhere else.

A test that ran and broke a threshold is a verdict, never an exception. An exception
means the test could not run, and is one of::

    SuiteFailure                    base of the suite's own exceptions
    ├── ConfigurationError          bad input: retrying cannot help (also a ValueError)
    │   │ spec, target file, stack config, missing binary
    │   └── SelectionError          an unknown test id, profile or night
    └── InfrastructureError         the platform did not start or could not be reached:
          the embedded stack, an unreachable target; retried per the test's policy

Other packages' errors are classified by ``failure_kind`` too: the load engine's refusals
(``LoadgenError``) are configuration; connection errors and httpx's transport errors
are infrastructure. Anything else is a bug: reported with its traceback, not retried.
"""

from __future__ import annotations

from typing import Literal

import httpx

from nightly_pipeline.loadgen import LoadgenError

FailureKind = Literal["configuration", "infrastructure", "bug"]


class SuiteFailure(Exception):
    """Base class of the exceptions that stop a test before it can give a verdict."""


class ConfigurationError(SuiteFailure, ValueError):
    """The input is wrong (a spec, a selection, a target file, a stack config); the
    message names the fix. Never retried."""


class SelectionError(ConfigurationError):
    """An unknown test id, profile or night; the message lists the valid ones."""


class InfrastructureError(SuiteFailure, RuntimeError):
    """The platform did not start, or nothing answered: retried per the test's policy."""


CONFIGURATION: tuple[type[BaseException], ...] = (ConfigurationError, LoadgenError)
INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    InfrastructureError,
    ConnectionError,
    httpx.TransportError,
)


def failure_kind(exc: BaseException) -> FailureKind:
    """How a test's exception is handled: configuration first (a refused target is a
    ``LoadgenError`` even when it looks like a network problem)."""
    if isinstance(exc, CONFIGURATION):
        return "configuration"
    if isinstance(exc, INFRASTRUCTURE):
        return "infrastructure"
    return "bug"
