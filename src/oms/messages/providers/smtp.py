"""The built-in email provider: SMTP with STARTTLS or implicit TLS and AUTH (aiosmtplib).

One SMTP session per message, bounded as a whole by ``timeout_s``. A 4xx reply (greylisting,
"try again later", a full queue) or a connection problem is retried later; a 5xx reply for the
recipient or the message is final, except authentication failures (530/534/535), retried so
that fixing the password resumes sending. The server's final reply (e.g. ``250 2.0.0 Ok: queued as
4F2A3``) is kept as the provider id.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from oms.messages.providers import OutgoingEmail, SendOutcome

_AUTH_CODES = frozenset({530, 534, 535})


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    sender: str
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0
    ca_file: str | None = None
    """CA certificates (PEM) to check the server's certificate with, for a relay whose
    certificate a private CA signed; unset: the system's trusted CAs."""

    def __repr__(self) -> str:  # never the password, whatever logs the object
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"sender={self.sender!r}, username={self.username!r}, "
            f"password={'***' if self.password else None})"
        )


def build_message(settings: SmtpSettings, mail: OutgoingEmail) -> EmailMessage:
    """The MIME message: text, and HTML as its alternative when there is one."""
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = mail.message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html")
    return msg


class SmtpProvider:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, email: OutgoingEmail) -> SendOutcome:
        s = self.settings
        try:
            msg = build_message(s, email)
        except (ValueError, TypeError) as exc:  # e.g. an address the email library refuses
            return SendOutcome(ok=False, error=f"message refused: {exc}", retry=False)
        try:
            # aiosmtplib's own timeout bounds each command; this bounds the whole session, which
            # the message's lease counts on (a server answering each command just in time
            # would otherwise hold the send, lease expired, while another worker sends again)
            async with asyncio.timeout(s.timeout_s):
                _, reply = await aiosmtplib.send(
                    msg,
                    hostname=s.host,
                    port=s.port,
                    username=s.username,
                    password=s.password,
                    use_tls=s.security == "tls",
                    start_tls=True if s.security == "starttls" else False,
                    cert_bundle=s.ca_file,
                    timeout=s.timeout_s,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            return SendOutcome(
                ok=False, error=f"recipient refused: {text}", retry=all(c < 500 for c in codes)
            )
        except aiosmtplib.SMTPResponseException as exc:
            retry = exc.code < 500 or exc.code in _AUTH_CODES
            return SendOutcome(ok=False, error=f"{exc.code} {exc.message}", retry=retry)
        except TimeoutError:
            return SendOutcome(ok=False, error=f"timed out after {s.timeout_s:g} s", retry=True)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return SendOutcome(ok=False, error=f"{type(exc).__name__}: {exc}", retry=True)
        return SendOutcome(ok=True, provider_id=reply.strip()[:256] or None)
