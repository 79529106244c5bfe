"""Provider settings per channel: saved through the API (``message_providers``), else, for
email, the ``OMS_SMTP_*`` settings. Secrets (SMTP password, SMS token) are stored, used to send,
and reported only as set or not set: no read returns them, no log line carries them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import httpx
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.config import Settings
from oms.messages.models import MessageProvider
from oms.messages.providers import EmailProvider, SmsProvider
from oms.messages.providers.sms_http import HttpSmsProvider, HttpSmsSettings
from oms.messages.providers.smtp import SmtpProvider, SmtpSettings
from oms.shared.errors import Unprocessable
from oms.shared.targets import TargetGuard, TargetRefused, check_url


@dataclass(frozen=True, slots=True)
class ProviderView:
    channel: str
    source: str
    """``api`` (saved), ``settings`` (OMS_SMTP_*), or ``none``."""
    settings: dict[str, Any]
    secret_set: bool
    updated_at: datetime | None


def _smtp_from_settings(settings: Settings) -> SmtpSettings | None:
    if not settings.smtp_host or not settings.message_sender:
        return None
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        sender=settings.message_sender,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout_s=settings.smtp_timeout_s,
        ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    )


def _smtp_from_row(row: MessageProvider, settings: Settings) -> SmtpSettings:
    cfg = row.settings
    return SmtpSettings(
        host=cfg["host"],
        port=int(cfg["port"]),
        security=cfg["security"],
        sender=cfg["sender"],
        username=cfg.get("username"),
        password=row.secret,
        timeout_s=settings.smtp_timeout_s,
        ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    )


def _sms_from_row(row: MessageProvider, settings: Settings) -> HttpSmsSettings:
    cfg = row.settings
    return HttpSmsSettings(
        url=cfg["url"],
        sender=cfg.get("sender"),
        token=row.secret,
        id_field=cfg.get("id_field") or "id",
        timeout_s=settings.sms_timeout_s,
    )


async def load(
    session: AsyncSession, *, settings: Settings, client: httpx.AsyncClient, guard: TargetGuard
) -> tuple[EmailProvider | None, SmsProvider | None]:
    """The providers to send with now (None: the channel has none); ``guard`` checks and pins
    the SMS provider's address at every send."""
    email_row = await session.get(MessageProvider, "email")
    sms_row = await session.get(MessageProvider, "sms")
    smtp = _smtp_from_row(email_row, settings) if email_row else _smtp_from_settings(settings)
    email = SmtpProvider(smtp) if smtp else None
    sms = (
        HttpSmsProvider(_sms_from_row(sms_row, settings), client, guard=guard) if sms_row else None
    )
    return email, sms


def message_id_domain(settings: Settings, email: EmailProvider) -> str:
    """The right-hand side of Message-IDs: the sender's domain, else ``oms.invalid``."""
    sender = getattr(getattr(email, "settings", None), "sender", None) or settings.message_sender
    address = parseaddr(sender or "")[1]
    return address.rpartition("@")[2] or "oms.invalid"


async def describe(session: AsyncSession, *, channel: str, settings: Settings) -> ProviderView:
    """A channel's provider as the API shows it (the secret as set / not set)."""
    row = await session.get(MessageProvider, channel)
    if row is not None:
        return ProviderView(
            channel, "api", dict(row.settings), row.secret is not None, row.updated_at
        )
    smtp = _smtp_from_settings(settings) if channel == "email" else None
    if smtp is not None:
        shown = {
            "host": smtp.host,
            "port": smtp.port,
            "security": smtp.security,
            "sender": smtp.sender,
            "username": smtp.username,
        }
        return ProviderView(channel, "settings", shown, smtp.password is not None, None)
    return ProviderView(channel, "none", {}, False, None)


def check_sms_url(url: str, *, allow_private: bool) -> None:
    """422 ``sms_url_not_allowed`` for an SMS provider URL oms may never send to (an internal
    address, credentials in it): the outbound-target policy of webhooks (``check_url``)."""
    try:
        check_url(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise Unprocessable(
            f"this URL may not receive SMS requests: {exc.detail}",
            code="sms_url_not_allowed",
            title="SMS provider URL not allowed",
            reason=exc.reason,
        ) from None


async def put(
    session: AsyncSession,
    *,
    channel: str,
    values: dict[str, Any],
    secret: str | None,
    keep_secret: bool,
    allow_private: bool,
    now: datetime,
) -> None:
    """Save a channel's provider. ``keep_secret``: the secret was not sent, keep the stored one.
    ``allow_private``: ``webhook_allow_private_targets`` (an SMS URL may be internal)."""
    if channel == "sms":
        check_sms_url(str(values["url"]), allow_private=allow_private)
    insert = pg_insert(MessageProvider).values(
        channel=channel, settings=values, secret=secret, updated_at=now
    )
    update: dict[str, Any] = {"settings": insert.excluded.settings, "updated_at": now}
    if not keep_secret:
        update["secret"] = insert.excluded.secret
    await session.execute(insert.on_conflict_do_update(index_elements=["channel"], set_=update))
