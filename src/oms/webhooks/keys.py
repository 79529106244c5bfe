"""Signing secrets in the Standard Webhooks format, shared by connectors and subscriptions."""

from __future__ import annotations

import base64
import secrets


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
