"""Errors at the serving boundary: every exception -> an HTTP status, a gRPC status and a body.

This is the one place where statuses are decided (HTTP and gRPC both call ``reply_for``). The
branches of core/errors.py's tree, and the transport's own subclasses, each carrying the field
it is about:

    InputError                       400  INVALID_ARGUMENT    the caller's input
    ├── BadRequest                   400  INVALID_ARGUMENT    (a bad body, naming the field)
    ├── RequestInvalid               422  INVALID_ARGUMENT    (a query or path parameter)
    ├── NotFound                     404  NOT_FOUND
    ├── MethodNotAllowed             405  UNIMPLEMENTED
    └── PayloadTooLarge              413  RESOURCE_EXHAUSTED  (body bytes, events, nesting)
    Refused                          403  PERMISSION_DENIED   the caller may not (now)
    ├── Unauthenticated              401  UNAUTHENTICATED     (no API key)
    ├── Forbidden                    403  PERMISSION_DENIED   (a key not ours, a scope it lacks)
    └── RateLimited                  429  RESOURCE_EXHAUSTED  (the key's token bucket is empty)
    DataError                        500  INTERNAL            our stored data is bad (the request
                                                              path degrades instead where it can:
                                                              a fallback feed, ``cache_corrupt``)
    ConfigError                      500  INTERNAL            (the server is misconfigured)
    BackendUnavailable               503  UNAVAILABLE
    NotSupported                     501  UNIMPLEMENTED
    anything else                    500  INTERNAL            ("internal error", nothing more)

Never a 4xx for anything but the caller's input or the caller's rights. Bodies are
``{"error": {"code", "message", "field"?}}``. Only input errors and refusals show their message
(they describe the caller's request); every other message may name hosts, paths or SQL, so the
client gets a fixed sentence and the server log gets the exception (redacted: core/redact.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from feedstack.core.errors import (
    BackendUnavailable,
    ConfigError,
    DataError,
    FeedstackError,
    InputError,
    NotSupported,
    Refused,
)

log = logging.getLogger("feedstack.serve")


class _FieldError(InputError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class _Refusal(Refused):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequest(_FieldError):
    """A body that cannot be used (not JSON, no events); names the field."""


class RequestInvalid(_FieldError):
    """A query or path parameter out of range or of the wrong type."""


class Unauthenticated(_Refusal):
    """No API key where one is needed."""


class Forbidden(_Refusal):
    """An API key that is not one of ours, or one without the scope the endpoint needs."""


class NotFound(_FieldError):
    """No such route or resource."""


class MethodNotAllowed(_FieldError):
    """A route that exists, called with another method."""


class PayloadTooLarge(_FieldError):
    """The body is larger than ``api.max_body_bytes`` or has too many events."""


class RateLimited(_Refusal):
    """The key's token bucket is empty; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, field=None)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class ErrorReply:
    http_status: int
    grpc_code: grpc.StatusCode
    code: str  # stable machine-readable code in the body
    message: str
    field: str | None = None
    retry_after_s: float | None = None

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


# Most specific first: the first isinstance match decides.
_TABLE: tuple[tuple[type[BaseException], int, grpc.StatusCode, str], ...] = (
    (RequestInvalid, 422, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
    (Unauthenticated, 401, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
    (Forbidden, 403, grpc.StatusCode.PERMISSION_DENIED, "forbidden"),
    (NotFound, 404, grpc.StatusCode.NOT_FOUND, "not_found"),
    (MethodNotAllowed, 405, grpc.StatusCode.UNIMPLEMENTED, "method_not_allowed"),
    (PayloadTooLarge, 413, grpc.StatusCode.RESOURCE_EXHAUSTED, "payload_too_large"),
    (RateLimited, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited"),
    (InputError, 400, grpc.StatusCode.INVALID_ARGUMENT, "bad_request"),
    (Refused, 403, grpc.StatusCode.PERMISSION_DENIED, "forbidden"),
    (DataError, 500, grpc.StatusCode.INTERNAL, "data_error"),
    (ConfigError, 500, grpc.StatusCode.INTERNAL, "misconfigured"),
    (BackendUnavailable, 503, grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (NotSupported, 501, grpc.StatusCode.UNIMPLEMENTED, "not_supported"),
)
_HIDDEN_MESSAGES = {
    "data_error": "internal error (stored data); the server log has the details",
    "misconfigured": "the server is misconfigured",
    "unavailable": "a backend is unavailable; retry later",
    "not_supported": "not supported by this server",
}


def reply_for(exc: BaseException) -> ErrorReply:
    """The status and body for ``exc``. Logs what the client is not shown."""
    for cls, http_status, grpc_code, code in _TABLE:
        if isinstance(exc, cls):
            if isinstance(exc, InputError | Refused):
                return ErrorReply(
                    http_status,
                    grpc_code,
                    code,
                    str(exc),
                    getattr(exc, "field", None),
                    getattr(exc, "retry_after_s", None),
                )
            if isinstance(exc, DataError):
                log.error("%s: %s", type(exc).__name__, exc)
            else:
                log.warning("%s: %s", type(exc).__name__, exc)
            return ErrorReply(http_status, grpc_code, code, _HIDDEN_MESSAGES[code])
    log.error("internal error", exc_info=exc)
    return ErrorReply(500, grpc.StatusCode.INTERNAL, "internal", "internal error")


def routing_error(status: int, detail: str) -> FeedstackError:
    """The framework's own routing refusals (no such route, wrong method) as our errors, so
    their status too is decided by the table above."""
    if status == 404:
        return NotFound(detail, None)
    if status == 405:
        return MethodNotAllowed(detail, None)
    return BadRequest(detail, None) if 400 <= status < 500 else FeedstackError(detail)


def kind_of(exc: BaseException) -> str:
    """The metrics label for an error: its class name, never its message (bounded cardinality)."""
    return type(exc).__name__
