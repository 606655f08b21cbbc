"""The API's errors and their HTTP mapping.

    ApiError(status, code, message)     answered as JSON {"error": code, "message": ...}
    ├── BadRequest (400)   malformed JSON, invalid fields, sha256 mismatch
    ├── Unauthorized (401) missing, bad or expired token; bad credentials
    ├── Forbidden (403)    not a participant (counted in sanctum_security_denied_total)
    ├── NotFound (404)
    ├── Conflict (409)     stale If-Match version
    ├── PayloadTooLarge (413)
    └── Unavailable (503)  a dependency (postgres, redis) is down or its breaker is open

Driver errors are translated into ``Unavailable`` at the adapter boundary (db.py,
storage.py); anything else becomes a 500 without a traceback in the body.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PreconditionRequired(ApiError):
    status, code = 428, "precondition_required"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class Unavailable(ApiError):
    status, code = 503, "unavailable"

    def __init__(self, dependency: str, message: str = "") -> None:
        super().__init__(message or f"{dependency} unavailable", dependency=dependency)
        self.dependency = dependency
