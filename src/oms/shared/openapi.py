"""Helpers to document error responses (problem+json) on every operation."""

from __future__ import annotations

from typing import Any

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
