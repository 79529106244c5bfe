"""Where webhooks may be sent: public internet addresses only, unless the local-development
setting (``webhook_allow_private_targets``) is on. The policy and both of its checks (when a
subscription is saved, and pinned at every delivery) live in :mod:`oms.shared.targets`, one
implementation shared with the HTTP SMS provider of customer messages (#22); re-exported here
for the webhook modules."""

from __future__ import annotations

from oms.shared.targets import (
    METADATA_ADDRESSES,
    METADATA_NAMES,
    REASONS,
    SETTING,
    IPAddress,
    Pinned,
    Resolver,
    TargetGuard,
    TargetRefused,
    TargetUnresolved,
    check_url,
    classify,
    literal_address,
    redact,
    system_resolver,
)

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_NAMES",
    "REASONS",
    "SETTING",
    "IPAddress",
    "Pinned",
    "Resolver",
    "TargetGuard",
    "TargetRefused",
    "TargetUnresolved",
    "check_url",
    "classify",
    "literal_address",
    "redact",
    "system_resolver",
]
