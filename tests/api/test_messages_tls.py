"""The SMTP provider against real TLS servers (aiosmtpd with a certificate made for the test by
the ``openssl`` command): STARTTLS and implicit TLS, AUTH over them, the certificate checked;
STARTTLS required means no fallback to plain text."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from oms.messages.providers import OutgoingEmail
from oms.messages.providers.smtp import SmtpProvider, SmtpSettings
from tests.api.messages_support import SMTP_PASSWORD, SMTP_USER, SmtpServer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer(starttls=_context(certificate))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer(tls=_context(certificate))
    server.start()
    yield server
    server.stop()


def provider(port: int, security: str, ca_file: Path | None, password: str = SMTP_PASSWORD):
    return SmtpProvider(
        SmtpSettings(
            host="127.0.0.1",
            port=port,
            security=security,  # type: ignore[arg-type]
            sender="Shop <orders@shop.example>",
            username=SMTP_USER,
            password=password,
            timeout_s=3,
            ca_file=str(ca_file) if ca_file else None,
        )
    )


MAIL = OutgoingEmail(
    to="giulia@example.it",
    subject="Ordine 1 confermato",
    text="Ciao",
    html="<p>Ciao</p>",
    message_id="<oms-test@shop.example>",
)


async def test_starttls_with_auth(
    starttls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    outcome = await provider(starttls_server.port, "starttls", certificate[0]).send(MAIL)
    assert outcome.ok, outcome.error
    assert starttls_server.handler.tls == [True]
    assert starttls_server.handler.authenticated == [True]
    assert outcome.provider_id and "queued as Q1" in outcome.provider_id


async def test_implicit_tls_with_auth(
    tls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    outcome = await provider(tls_server.port, "tls", certificate[0]).send(MAIL)
    assert outcome.ok, outcome.error
    assert tls_server.handler.authenticated == [True]
    # (aiosmtpd does not flag implicit TLS sessions: that the port speaks only TLS shows it)
    plain = await provider(tls_server.port, "none", None).send(MAIL)
    assert not plain.ok and len(tls_server.handler.received) == 1


async def test_an_untrusted_certificate_is_refused(starttls_server: SmtpServer) -> None:
    outcome = await provider(starttls_server.port, "starttls", None).send(MAIL)
    assert not outcome.ok and outcome.retry
    assert "certificate" in (outcome.error or "").lower()
    assert starttls_server.handler.received == []


async def test_starttls_is_never_skipped(certificate: tuple[Path, Path]) -> None:
    plain = SmtpServer()  # offers no STARTTLS
    plain.start()
    try:
        outcome = await provider(plain.port, "starttls", certificate[0]).send(MAIL)
    finally:
        plain.stop()
    assert not outcome.ok and outcome.retry
    assert "STARTTLS" in (outcome.error or "")
    assert plain.handler.received == []  # nothing went out in clear text


async def test_a_wrong_password_is_a_retryable_failure_that_names_no_secret(
    starttls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    outcome = await provider(
        starttls_server.port, "starttls", certificate[0], password="wrong-pw-4411"
    ).send(MAIL)
    assert not outcome.ok and outcome.retry  # fixing the password resumes sending
    assert (outcome.error or "").startswith("535")
    assert "wrong-pw-4411" not in (outcome.error or "")
    assert starttls_server.handler.received == []
