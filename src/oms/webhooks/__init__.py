"""Webhooks: signed events in from marketplaces and payment providers, and signed events out."""
