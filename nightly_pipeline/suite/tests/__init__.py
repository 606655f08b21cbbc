"""The scenarios of the nightly tests, registered with the runner by test id on import."""

from nightly_pipeline.suite.tests import message_soak  # noqa: F401
