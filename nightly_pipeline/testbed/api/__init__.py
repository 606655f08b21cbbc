"""The testbed's HTTP/WebSocket API process (DESIGN.md §4, testbed/CONTRACT.md).

python -m nightly_pipeline.testbed.api --config FILE
"""

from nightly_pipeline.testbed.api.app import SERVICES, Services, build_app

__all__ = ["SERVICES", "Services", "build_app"]
