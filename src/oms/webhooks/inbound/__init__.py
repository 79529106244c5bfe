"""Inbound webhooks: connectors, signature checks, the inbox, and format adapters."""
