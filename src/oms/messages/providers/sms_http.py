"""A generic SMS provider: one JSON POST per message to the provider's URL.

Request: ``{"to": "+39...", "from": sender, "text": "..."}``, ``Authorization: Bearer <token>``
and ``Idempotency-Key`` (the same on every attempt of a message: a provider that honours it
sends once even when oms retries). A 2xx answer is a success, its JSON ``id_field`` (default
``id``) the provider id; 429, 5xx, timeouts and connection errors are retried; any other answer
is final. The HTTP client is injected (tests pass ``httpx.MockTransport`` or a local server).

The URL is held to the outbound-target policy of webhooks (:mod:`oms.shared.targets`): refused
when saved if it spells an internal address, and at every send its host is resolved, every
address checked, and the request sent to the checked address (``Host`` and TLS name stay the
name). A refused send connects to nothing; it is retried (fixing the URL, the DNS or the setting
resumes sending) until the message runs out of attempts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from oms.messages.providers import OutgoingSms, SendOutcome
from oms.shared.targets import TargetGuard, TargetRefused, TargetUnresolved


@dataclass(frozen=True, slots=True)
class HttpSmsSettings:
    url: str
    sender: str | None = None
    token: str | None = None
    id_field: str = "id"
    timeout_s: float = 10.0

    def __repr__(self) -> str:  # never the token
        return (
            f"HttpSmsSettings(url={self.url!r}, sender={self.sender!r}, "
            f"token={'***' if self.token else None}, id_field={self.id_field!r})"
        )


class HttpSmsProvider:
    def __init__(
        self, settings: HttpSmsSettings, client: httpx.AsyncClient, *, guard: TargetGuard
    ) -> None:
        self.settings = settings
        self.client = client
        self.guard = guard

    async def send(self, sms: OutgoingSms) -> SendOutcome:
        s = self.settings
        headers = {"Idempotency-Key": sms.idempotency_key}
        if s.token:
            headers["Authorization"] = f"Bearer {s.token}"
        body = {"to": sms.to, "from": s.sender, "text": sms.text}
        try:
            async with asyncio.timeout(s.timeout_s):  # the DNS answer and the reading included
                target = await self.guard.pin(s.url)
                request = self.client.build_request(
                    "POST",
                    target.url,
                    json=body,
                    headers=headers | target.headers,
                    extensions=target.extensions,
                    timeout=s.timeout_s,
                )
                resp = await self.client.send(request, stream=True)
                try:
                    raw = await _read_bounded(resp)
                finally:
                    await resp.aclose()
        except TargetRefused as exc:
            return SendOutcome(ok=False, error=f"refused: {exc.detail}", retry=True)
        except TargetUnresolved as exc:
            return SendOutcome(ok=False, error=str(exc), retry=True)
        except TimeoutError:
            return SendOutcome(ok=False, error=f"timed out after {s.timeout_s:g} s", retry=True)
        except httpx.HTTPError as exc:
            return SendOutcome(ok=False, error=f"{type(exc).__name__}: {exc}", retry=True)
        if resp.is_success:
            provider_id = None
            try:
                payload = json.loads(raw)
                if isinstance(payload, dict) and payload.get(s.id_field) is not None:
                    provider_id = str(payload[s.id_field])[:256]
            except ValueError:
                pass
            return SendOutcome(ok=True, provider_id=provider_id)
        retry = resp.status_code == 429 or resp.status_code >= 500
        text = raw[:300].decode("utf-8", "replace")
        return SendOutcome(ok=False, error=f"HTTP {resp.status_code}: {text}", retry=retry)


MAX_RESPONSE_BYTES = 65_536
"""How much of the provider's answer is read: its id (or an error) is in the first bytes."""


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]
