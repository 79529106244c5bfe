"""Outbound webhooks: subscriptions, deliveries and attempts, signed per Standard Webhooks."""
