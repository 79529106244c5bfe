"""RFC 9457 problem details: every error oms returns is one of these."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://oms.dev/problems/"

UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05", "22P02"})
"""Postgres refusing text it cannot store: character_not_in_repertoire (NUL in text),
untranslatable_character (\\u0000 in jsonb), invalid_text_representation (e.g. an unpaired
surrogate escape in free-form JSON). The client's input, answered 422 ``invalid_character``."""
UNSTORABLE_TEXT = "text cannot contain a NUL character (\\u0000) or an unpaired surrogate"


class ProblemError(Exception):
    """An error with an HTTP status and a stable machine-readable ``code``."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Resource not found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "This API key may not do that"


class Unprocessable(ProblemError):
    status = 422
    code = "validation_error"
    title = "The request is not valid"


class ServiceUnavailable(ProblemError):
    status = 503
    code = "service_unavailable"
    title = "Service temporarily unavailable"
