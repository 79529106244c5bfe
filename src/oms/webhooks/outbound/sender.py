"""Sign (Standard Webhooks) and POST one event; classify the outcome. No database here.

Signing uses the ``standardwebhooks`` library, so any Standard Webhooks verifier accepts it:
``webhook-id`` is the event id (stable across retries, for the receiver's deduplication),
``webhook-timestamp`` the Unix time of this attempt, ``webhook-signature`` ``v1,<base64>``.

One attempt has one deadline, ``timeout_s``: resolving and checking the target (``targets``),
connecting, sending, and receiving the status line and headers. The status decides the outcome:
a 2xx within the deadline is a success, whatever happens to the body afterwards (its first
2 KiB are read for the log, for at most BODY_READ_S more). No status within the deadline is a
failure, retried: the receiver may have got the request (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from oms.webhooks.outbound.targets import TargetGuard, TargetRefused, TargetUnresolved

RESPONSE_SNIPPET_BYTES = 2048
BODY_READ_S = 1.0
"""How long the first bytes of a response body are waited for after its status (log only)."""
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
    refused: bool = False  # the target is not allowed: nothing was connected to


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
    """The first 2 KiB of the body, or what arrived of them within BODY_READ_S."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(BODY_READ_S):
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


def _failed(
    started: float, error: str, *, retryable: bool = True, refused: bool = False
) -> SendResult:
    return SendResult(
        ok=False,
        status_code=None,
        duration_ms=int((time.perf_counter() - started) * 1000),
        error=error[:1000],
        response_body=None,
        retryable=retryable,
        refused=refused,
    )


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timeout_s: float,
    guard: TargetGuard,
    now: datetime | None = None,
) -> SendResult:
    """POST one signed event to the address ``guard`` checked; never raises for network or
    HTTP failures. A refused target is not retried and nothing is connected to."""
    stamp = now or datetime.now(UTC)
    headers = signed_headers(secret=secret, msg_id=msg_id, timestamp=stamp, body=body)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            target = await guard.pin(url)
            request = client.build_request(
                "POST",
                target.url,
                content=body,
                headers=headers | target.headers,
                extensions=target.extensions,
                timeout=timeout_s,
            )
            response = await client.send(request, stream=True)
    except TargetRefused as exc:
        return _failed(started, f"refused: {exc.detail}", retryable=False, refused=True)
    except TargetUnresolved as exc:
        return _failed(started, str(exc))
    except TimeoutError:
        return _failed(started, f"timed out after {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return _failed(started, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    duration_ms = int((time.perf_counter() - started) * 1000)
    try:
        snippet = await _read_snippet(response)
    finally:
        with contextlib.suppress(httpx.HTTPError):
            await response.aclose()
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
