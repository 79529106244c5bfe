"""Sign (Standard Webhooks) and POST one event; classify the outcome. No database here.

Signing uses the ``standardwebhooks`` library, so any Standard Webhooks verifier accepts it:
``webhook-id`` is the event id (stable across retries, for the receiver's deduplication),
``webhook-timestamp`` the Unix time of this attempt, ``webhook-signature`` ``v1,<base64>``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from oms import __version__

RESPONSE_SNIPPET_BYTES = 2048
USER_AGENT = f"oms-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response_body: str | None
    retryable: bool
    retry_after_s: float | None = None


_FIRST = ("id", "type", "occurred_at")


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: ``{id, type, occurred_at, data}``, compact."""
    ordered = {k: payload[k] for k in _FIRST if k in payload} | payload
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(*, secret: str, msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body.decode())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def backoff_s(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def _read_snippet(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_SNIPPET_BYTES:
            break
    return b"".join(chunks)[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace")


def classify(status: int) -> tuple[bool, bool]:
    """(ok, retryable) for an HTTP status: 2xx ok; 408, 429 and 5xx retried; others not."""
    if 200 <= status < 300:
        return True, False
    return False, status in (408, 429) or status >= 500


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timeout_s: float,
    now: datetime | None = None,
) -> SendResult:
    """POST one signed event; never raises for network or HTTP failures."""
    stamp = now or datetime.now(UTC)
    headers = signed_headers(secret=secret, msg_id=msg_id, timestamp=stamp, body=body)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout_s
            ) as response:
                snippet = await _read_snippet(response)
    except TimeoutError:
        return SendResult(
            ok=False,
            status_code=None,
            duration_ms=int((time.perf_counter() - started) * 1000),
            error=f"timed out after {timeout_s:g} s",
            response_body=None,
            retryable=True,
        )
    except httpx.HTTPError as exc:
        return SendResult(
            ok=False,
            status_code=None,
            duration_ms=int((time.perf_counter() - started) * 1000),
            error=f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__,
            response_body=None,
            retryable=True,
        )
    duration_ms = int((time.perf_counter() - started) * 1000)
    ok, retryable = classify(response.status_code)
    retry_after = None
    if response.status_code in (429, 503):
        retry_after = _retry_after(response.headers.get("retry-after"), stamp)
    return SendResult(
        ok=ok,
        status_code=response.status_code,
        duration_ms=duration_ms,
        error=None if ok else f"HTTP {response.status_code}",
        response_body=snippet or None,
        retryable=retryable,
        retry_after_s=retry_after,
    )
