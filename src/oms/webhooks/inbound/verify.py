"""Signature checks for inbound webhooks. Every comparison is constant-time.

* ``oms`` format: Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
  The expected signature is computed by the ``standardwebhooks`` library; the timestamp must lie
  within ``OMS_WEBHOOK_TOLERANCE_S`` of now (the signed timestamp is the replay protection).
* ``shopify`` and ``woocommerce``: base64 HMAC-SHA256 of the raw body with the shared secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook

from oms.shared.errors import Unauthorized


class SignatureRejected(Unauthorized):
    title = "Webhook signature rejected"
    code = "invalid_signature"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    return value.strip() if value and value.strip() else None


def check_timestamp(
    timestamp: datetime, *, now: datetime, max_age: timedelta, max_skew: timedelta
) -> None:
    """Reject a timestamp older than ``max_age`` or further than ``max_skew`` in the future."""
    if timestamp < now - max_age:
        raise SignatureRejected(
            f"the webhook timestamp is older than {int(max_age.total_seconds())} s "
            "(replay protection); send a fresh signature",
            code="timestamp_out_of_tolerance",
        )
    if timestamp > now + max_skew:
        raise SignatureRejected(
            f"the webhook timestamp is more than {int(max_skew.total_seconds())} s in the future",
            code="timestamp_out_of_tolerance",
        )


def verify_standard_webhook(
    body: bytes, headers: Mapping[str, str], *, secret: str, tolerance_s: int, now: datetime
) -> str:
    """Verify a Standard Webhooks signature; return the message id (``webhook-id``)."""
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureRejected(
            "send the webhook-id, webhook-timestamp and webhook-signature headers",
            code="missing_signature",
        )
    try:
        timestamp = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureRejected(
            "webhook-timestamp must be integer Unix seconds", code="invalid_signature"
        ) from exc
    tolerance = timedelta(seconds=tolerance_s)
    check_timestamp(timestamp, now=now, max_age=tolerance, max_skew=tolerance)
    try:
        data = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureRejected("the body is not UTF-8", code="invalid_signature") from exc
    expected = Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=data)
    expected_bytes = base64.b64decode(expected.split(",", 1)[1])
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected_bytes, given):
            return msg_id
    raise SignatureRejected("the webhook signature does not match", code="invalid_signature")


def verify_hmac_base64(body: bytes, signature: str | None, *, secret: str, header: str) -> None:
    """Check ``header`` = base64(HMAC-SHA256(secret, raw body)) (Shopify, WooCommerce)."""
    if not signature or not signature.strip():
        raise SignatureRejected(f"send the {header} header", code="missing_signature")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode("latin-1", "replace")):
        raise SignatureRejected(f"the {header} signature does not match", code="invalid_signature")
