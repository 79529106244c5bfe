"""Helpers to document error responses (problem+json) on every operation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from oms.shared.errors import PROBLEM_JSON


class Problem(BaseModel):
    """RFC 9457 problem details. ``code`` is stable: branch on it."""

    type: str = Field(examples=["https://oms.dev/problems/illegal_transition"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["cannot move an order from 'placed' to 'shipped'"])
    code: str = Field(examples=["illegal_transition"])
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors: one entry per offending field"
    )

    model_config = {"extra": "allow"}


_DESCRIPTIONS = {
    400: "Malformed request (e.g. invalid JSON, bad cursor)",
    401: "Missing, unknown or revoked API key (`missing_api_key`, `invalid_api_key`)",
    403: "The API key's role or channel does not allow this",
    404: "Not found (or not visible to this API key)",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Unsupported media type (send application/json)",
    422: "Validation failed; `errors` lists the offending fields",
    503: "Database unavailable; retry after the `Retry-After` seconds",
}


def problems(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given problem statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": Problem,
            "description": descriptions.get(f"d{status}", _DESCRIPTIONS.get(status, "Error")),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out


AUTH_PROBLEMS = (401, 403, 422, 503)

MAX_BIGINT = 2**63 - 1
BigId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="A bigint id")]
"""A bigint primary key in a path: out-of-range numbers are 422, not a database error."""

_BODY_METHODS = ("post", "put", "patch")


_UNCONSTRAINED = {"type", "title", "description", "examples", "default"}


def _can_be_invalid(schema: dict[str, Any]) -> bool:
    """Whether some value of a parameter fails validation (a plain string never does)."""
    if "anyOf" in schema:
        return any(_can_be_invalid(s) for s in schema["anyOf"] if s.get("type") != "null")
    return schema.get("type") != "string" or not set(schema) <= _UNCONSTRAINED


def document_transport_problems(
    schema: dict[str, Any], *, raw_body_prefixes: tuple[str, ...] = ()
) -> None:
    """Document, on every operation, the errors raised before its handler runs.

    The middleware answers 413 (body too large) and 415 (not JSON) to any POST/PUT/PATCH, and
    a body that is not valid JSON is 400 ``malformed_json`` wherever a JSON body is read.
    Raw-body routes take any content type, so they get no 415. Problems are only ever sent as
    ``application/problem+json``, so that is the one media type documented for them. An
    operation with neither a body nor a parameter that can be invalid never answers 422.
    """
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            if "requestBody" not in operation and not any(
                _can_be_invalid(p.get("schema", {})) for p in operation.get("parameters", [])
            ):
                responses.pop("422", None)
            if method in _BODY_METHODS:
                statuses = [413]
                if not path.startswith(raw_body_prefixes):
                    statuses.append(415)
                if "requestBody" in operation:
                    statuses.append(400)
                for status, entry in problems(*statuses).items():
                    if str(status) not in responses:
                        entry.pop("model")
                        responses[str(status)] = entry
            for status, entry in responses.items():
                content = entry.get("content", {})
                if status.isdigit() and int(status) >= 400 and PROBLEM_JSON in content:
                    content.pop("application/json", None)
            operation["responses"] = dict(sorted(responses.items()))
