"""Helpers to document error responses (problem+json) on every operation."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from oms.shared.errors import PROBLEM_JSON


def _no_null_defaults(schema: dict[str, Any]) -> None:
    """Optional members are left out of an answer, never sent as null: no ``default: null``."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None:
            del prop["default"]


class Problem(BaseModel):
    """RFC 9457 problem details. ``code`` is stable: branch on it."""

    type: str = Field(examples=["https://oms.dev/problems/illegal_transition"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["cannot move an order from 'placed' to 'shipped'"])
    code: str = Field(examples=["illegal_transition"])
    instance: str | SkipJsonSchema[None] = Field(
        default=None, description="The request path", examples=["/v1/orders"]
    )

    model_config = ConfigDict(extra="allow", json_schema_extra=_no_null_defaults)


# Extension members are sent only by the problems that carry them (never as null): each is
# optional, and documented without null.
Absent = SkipJsonSchema[None]


class ShortLine(BaseModel):
    """A line that cannot be filled: ``requested`` units asked, ``available`` placeable."""

    line_id: str = Field(
        description="Identifies the line within this answer (a preview numbers lines from 1)"
    )
    sku: str
    requested: int
    available: int


class HoldRef(BaseModel):
    """A hold standing on an order (``order_on_hold``)."""

    id: uuid.UUID
    reason: str = Field(examples=["fraud_review"])
    rule: str | None = Field(description="The hold rule that placed it, if any")
    note: str | None


class ConflictProblem(Problem):
    """A 409: the request conflicts with the current state. Extension members by ``code``:
    `insufficient_stock`: `short_lines`; `illegal_transition` and
    `illegal_shipment_transition`: `current_status`, `requested_status`,
    `allowed_transitions`; `partially_shipped`: `current_status`, `allowed_transitions`;
    `version_conflict`: `current_status`, `current_version`; `order_not_ready`,
    `order_not_delivered`, `reroute_not_allowed`, `concurrent_modification`,
    `illegal_return_transition`, `inbox_not_replayable`: `current_status`;
    `duplicate_external_reference`: `order_id`; `payment_reference_conflict`: `payment_id`;
    `overpayment`: `captured`, `total`; `refund_exceeds_captured`: `refundable`;
    `return_exceeds_delivered`: `order_line_id`, `returnable`; `count_guard_mismatch` and
    `on_hand_limit`: `on_hand`; `below_reserved`: `reserved`; `order_on_hold`: `current_status`,
    `holds`; `hold_already_released`, `order_closed`: `current_status`."""

    short_lines: list[ShortLine] | Absent = Field(
        default=None, description="insufficient_stock: every line that cannot be filled"
    )
    current_status: str | Absent = Field(default=None, examples=["delivered"])
    requested_status: str | Absent = Field(default=None, examples=["cancelled"])
    allowed_transitions: list[str] | Absent = Field(
        default=None, description="The statuses it may move to from here", examples=[["returned"]]
    )
    current_version: int | Absent = None
    order_id: uuid.UUID | Absent = Field(default=None, description="The existing order")
    payment_id: uuid.UUID | Absent = Field(default=None, description="The existing payment")
    order_line_id: uuid.UUID | Absent = None
    captured: int | Absent = Field(default=None, description="Minor units captured so far")
    total: int | Absent = Field(default=None, description="The order total (minor units)")
    refundable: int | Absent = Field(default=None, description="Minor units still refundable")
    returnable: int | Absent = Field(default=None, description="Units still returnable")
    on_hand: int | Absent = None
    reserved: int | Absent = None
    holds: list[HoldRef] | Absent = Field(
        default=None, description="order_on_hold: the holds standing on the order"
    )


class ValidationIssue(BaseModel):
    """One offending field."""

    field: str = Field(examples=["body.lines.0.quantity"])
    loc: list[str] = Field(examples=[["body", "lines", "0", "quantity"]])
    message: str = Field(examples=["Input should be greater than 0"])
    type: str = Field(examples=["greater_than"])


class ValidationProblem(Problem):
    """A 422: the request is not valid. `validation_error` lists `errors` (at most 50, then
    `errors_total`); `bulk_row_invalid` names the `row` and `column`."""

    errors: list[ValidationIssue] | Absent = Field(
        default=None, description="validation_error: one entry per offending field"
    )
    errors_total: int | Absent = Field(
        default=None, description="How many errors there were, when more than listed"
    )
    row: int | Absent = Field(default=None, description="bulk_row_invalid: 1-based row")
    column: str | Absent = Field(default=None, description="bulk_row_invalid: the column")


PROBLEM_MODELS: tuple[type[Problem], ...] = (Problem, ConflictProblem, ValidationProblem)
_MODEL_BY_STATUS: dict[int, type[Problem]] = {409: ConflictProblem, 422: ValidationProblem}

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

RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}
WWW_AUTHENTICATE = {
    "description": "`Bearer`: send the API key as `Authorization: Bearer <key>`",
    "schema": {"type": "string"},
}


def problems(
    *statuses: int,
    retry_after: tuple[int, ...] = (503,),
    bearer: bool = True,
    **descriptions: str,
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given problem statuses.

    409 answers are :class:`ConflictProblem`, 422 answers :class:`ValidationProblem`, the rest
    :class:`Problem`. ``retry_after``: the statuses sent with a ``Retry-After`` header; ``bearer``:
    a 401 comes with ``WWW-Authenticate: Bearer`` (API-key authentication).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = _MODEL_BY_STATUS.get(status, Problem)
        entry: dict[str, Any] = {
            "model": model,
            "description": descriptions.get(f"d{status}", _DESCRIPTIONS.get(status, "Error")),
            "content": {
                PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
        headers: dict[str, Any] = {}
        if status in retry_after:
            headers["Retry-After"] = RETRY_AFTER
        if status == 401 and bearer:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        if headers:
            entry["headers"] = headers
        out[status] = entry
    return out


AUTH_PROBLEMS = (401, 403, 422, 503)

MAX_BIGINT = 2**63 - 1
BigId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="A bigint id")]
"""A bigint primary key in a path: out-of-range numbers are 422, not a database error."""

CodePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
        description="A warehouse (store) or supplier code",
        examples=["BER"],
    ),
]
"""A warehouse, store or supplier code in a path: the form codes are created with; anything
else (a NUL...) is 422, not a database error."""

IdCursor = Annotated[
    # the pattern is documented, not enforced here: any other text is 400 `invalid_cursor`
    Annotated[str, Field(json_schema_extra={"pattern": r"^[0-9]+$"})] | None,
    Query(
        max_length=19,
        description="The `next_cursor` of the previous page: digits (400 `invalid_cursor` if "
        "it is not one)",
    ),
]
"""A page cursor that is an id (the last one of the previous page)."""

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
    operation with neither a body nor a parameter that can be invalid never answers 422. The
    problem schemas (one per kind of problem, with their typed extension members) are added
    to the components, and every 503 documents its ``Retry-After`` header.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(m, "serialization") for m in PROBLEM_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    components.update(defs.get("$defs", {}))
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
                if status == "503":
                    entry.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER)
            operation["responses"] = dict(sorted(responses.items()))
