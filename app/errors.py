"""The domain errors, and the HTTP status and JSON error code each maps to.

    FleetbedError                 base: never raised itself
    ├── BadRequest          400   the body is not well-formed JSON or not the expected shape
    ├── Unauthorized        401   no token, or a token that is forged, tampered, truncated or expired
    ├── Forbidden           403   a valid token of the wrong role, or a wrong enrolment key
    ├── NotFound            404   the resource does not exist
    ├── RequestTimeout      408   the body arrived too slowly (slow or stalled client)
    ├── PayloadTooLarge     413   the body is over the size limit, or an array over the batch limit
    ├── UnsupportedMedia    415   the body is not `application/json`
    ├── InvalidFields       422   the JSON is well-formed but fields are missing, unknown or out of range
    ├── TooManyRequests     429   too many logins from one client address (Retry-After)
    ├── InternalError       500   a bug of ours (logged with its traceback where it happened); no internals shown
    └── Unavailable         503   the database is unreachable, full, read-only or timing out, or the service is
                                  shedding load (Retry-After)

The error middleware (`app.middleware`) turns each into `{"error": code, "message": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field: a JSON path such as `[3].charge_now`, and what is wrong with it."""

    field: str
    problem: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class FleetbedError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(FleetbedError):
    status = 400
    code = "bad_request"


class Unauthorized(FleetbedError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="fleetbed"'}


class Forbidden(FleetbedError):
    status = 403
    code = "forbidden"


class NotFound(FleetbedError):
    status = 404
    code = "not_found"


class RequestTimeout(FleetbedError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(FleetbedError):
    status = 413
    code = "payload_too_large"


class UnsupportedMedia(FleetbedError):
    status = 415
    code = "unsupported_media_type"


class InvalidFields(FleetbedError):
    status = 422
    code = "invalid_fields"

    def __init__(self, problems: list[FieldProblem]) -> None:
        shown = "; ".join(f"{p.field}: {p.problem}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} invalid field(s): {shown}{more}. Fix these fields and send again.")
        self.problems = problems

    def body(self) -> dict[str, Any]:
        return {**super().body(), "fields": [p.as_json() for p in self.problems[:100]]}


class InternalError(FleetbedError):
    status = 500
    code = "internal"

    def __init__(self) -> None:
        super().__init__("an unexpected error occurred; it has been logged")


class Unavailable(FleetbedError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class TooManyRequests(FleetbedError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
