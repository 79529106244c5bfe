"""Tracking links: an order id and an expiry, encrypted and signed (pure; no I/O).

A token is 59 URL-safe characters: base64url of a 20-byte tag and 24 encrypted bytes. The tag is
the first 20 bytes of HMAC-SHA256 over the order's UUID (16 bytes) and the expiry in Unix
seconds (8 bytes); those 24 bytes are sent XORed with HMAC-SHA256 of the tag under a second key
(a synthetic-IV construction: deterministic, and a different tag for every order and expiry).
The token cannot be guessed (160-bit tag) nor altered (any changed bit fails the comparison,
made in constant time), and decoding it shows nothing: not the order's id, not the expiry.
Checking needs only the key: no lookup of stored links. Changing the key (``OMS_TRACKING_SECRET``,
or the ``tracking_keys`` row) invalidates every link made with the old one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

_MAC_BYTES = 20
_PAYLOAD_BYTES = 24
TOKEN_CHARS = 59


class InvalidToken(ValueError):
    """Malformed, or signed with another key, or altered."""


class ExpiredToken(ValueError):
    """Genuine, but past its expiry."""

    def __init__(self, order_id: uuid.UUID, expired_at: datetime) -> None:
        super().__init__(f"tracking link expired at {expired_at.isoformat()}")
        self.order_id = order_id
        self.expired_at = expired_at


def derive_key(secret: str) -> bytes:
    """The HMAC key of tracking links, derived from the server's secret (domain-separated)."""
    return hmac.new(secret.encode(), b"oms tracking link v1", hashlib.sha256).digest()


def _mac(key: bytes, payload: bytes) -> bytes:
    mac_key = hmac.new(key, b"mac", hashlib.sha256).digest()
    return hmac.new(mac_key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _xor_stream(key: bytes, tag: bytes, data: bytes) -> bytes:
    """``data`` XOR a keystream drawn from the tag (encrypts and decrypts)."""
    enc_key = hmac.new(key, b"enc", hashlib.sha256).digest()
    stream = hmac.new(enc_key, tag, hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def sign(order_id: uuid.UUID, expires_at: datetime, key: bytes) -> str:
    """A token for ``order_id`` valid until ``expires_at`` (second precision)."""
    payload = order_id.bytes + int(expires_at.timestamp()).to_bytes(8, "big")
    tag = _mac(key, payload)
    return _encode(tag + _xor_stream(key, tag, payload))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def verify(token: str, key: bytes, *, now: datetime) -> tuple[uuid.UUID, datetime]:
    """The order id and expiry of a genuine, unexpired token; raise otherwise."""
    if len(token) != TOKEN_CHARS or not token.isascii():
        raise InvalidToken("malformed tracking link")
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed tracking link") from None
    if len(raw) != _PAYLOAD_BYTES + _MAC_BYTES or _encode(raw) != token:
        # (the second test refuses the other spellings of the same bytes: unused low bits)
        raise InvalidToken("malformed tracking link")
    tag = raw[:_MAC_BYTES]
    payload = _xor_stream(key, tag, raw[_MAC_BYTES:])
    if not hmac.compare_digest(tag, _mac(key, payload)):
        raise InvalidToken("tracking link not recognised")
    order_id = uuid.UUID(bytes=payload[:16])
    expires_at = datetime.fromtimestamp(int.from_bytes(payload[16:], "big"), tz=UTC)
    if now >= expires_at:
        raise ExpiredToken(order_id, expires_at)
    return order_id, expires_at
