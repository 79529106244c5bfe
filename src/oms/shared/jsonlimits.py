"""Limits on free-form JSON accepted from clients (an order's ``attributes``).

oms stores such a document as JSONB and renders it back in every read of its owner, so it accepts
only what it can render. pydantic-core refuses to serialize anything nested past its recursion
guard (about 255 levels, counted from the response model down: "Maximum serialization depth
exceeded"); an order whose attributes nested 256 deep was committed with its reservation and then
answered 500 on every read, list and cancel. Python's ``json`` and Postgres have their own,
different limits. These bounds sit well inside all of them and are checked when the request is
validated, before anything is written:

- at most :data:`MAX_DEPTH` levels of nesting (the document itself is the first level);
- at most :data:`MAX_BYTES` bytes as compact UTF-8 JSON;
- only JSON values (no NaN or infinities, which Postgres cannot store in JSONB).

Use :data:`JsonObject` for any such field, and put :data:`LIMITS` in its description.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

T = TypeVar("T")

MAX_DEPTH = 128
MAX_BYTES = 16 * 1024

LIMITS = (
    f"At most {MAX_DEPTH} levels of nesting and {MAX_BYTES // 1024} KiB ({MAX_BYTES} bytes) as "
    "compact UTF-8 JSON (422 `validation_error` with error type `json_too_deep` or "
    "`json_too_large`)."
)


def json_depth(value: Any, *, stop_above: int | None = None) -> int:
    """Levels of nesting: a scalar is 0, ``{}`` and ``[1]`` are 1, ``{"a": [1]}`` is 2.

    Iterative (any depth, no recursion); returns as soon as the depth exceeds ``stop_above``.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON; ValueError/TypeError if it is not JSON."""
    dumped = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(dumped.encode("utf-8", "surrogatepass"))


def check_json_limits(value: T) -> T:
    """``value`` unchanged if within :data:`MAX_DEPTH` and :data:`MAX_BYTES`, else a
    validation error (types ``json_too_deep``, ``json_too_large``, ``json_invalid_value``)."""
    if json_depth(value, stop_above=MAX_DEPTH) > MAX_DEPTH:
        raise PydanticCustomError(
            "json_too_deep",
            "nested too deep: at most {max_depth} levels are accepted",
            {"max_depth": MAX_DEPTH},
        )
    try:
        size = json_size(value)
    except (TypeError, ValueError) as exc:
        raise PydanticCustomError(
            "json_invalid_value", "holds a value that is not JSON (NaN, Infinity or another type)"
        ) from exc
    if size > MAX_BYTES:
        raise PydanticCustomError(
            "json_too_large",
            "too large: {size} bytes as compact JSON, at most {max_bytes} are accepted",
            {"size": size, "max_bytes": MAX_BYTES},
        )
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_limits)]
"""A client-supplied JSON object, bounded by :data:`MAX_DEPTH` and :data:`MAX_BYTES`."""
