"""How messages leave oms: a provider per channel. Email goes through SMTP (``smtp``), SMS
through any provider implementing :class:`SmsProvider` (``sms_http``: JSON over HTTP).

A provider returns a :class:`SendOutcome` and never raises for a refusal or a network error:
``retry`` says whether the same message may succeed later (a 4xx SMTP reply, a timeout, a 5xx
or 429 HTTP answer), else it is dead (a 5xx SMTP reply for the recipient, a 4xx HTTP answer).
Errors never carry the provider's secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SendOutcome:
    ok: bool
    provider_id: str | None = None
    error: str | None = None
    retry: bool = False


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str | None
    message_id: str
    """The Message-ID header, the same on every attempt of one message."""


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    to: str
    text: str
    idempotency_key: str
    """The same on every attempt of one message: a provider honouring it sends once."""


class EmailProvider(Protocol):
    async def send(self, email: OutgoingEmail) -> SendOutcome: ...


class SmsProvider(Protocol):
    async def send(self, sms: OutgoingSms) -> SendOutcome: ...
