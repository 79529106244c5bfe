"""API key roles, shared by auth and the domains that guard operations by role."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    STOREFRONT = "storefront"
    FULFILLMENT = "fulfillment"
    CONNECTOR = "connector"
