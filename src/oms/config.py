"""Settings, read from ``OMS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    """One API process per CPU, at most 8 (bench/load.py: on 2 CPUs shared with Postgres, 2
    processes beat 1 and 4; more processes than CPUs only add switching)."""
    return max(1, min(8, os.cpu_count() or 1))


WEBHOOK_LEASE_MARGIN_S = 10.0
"""How much longer than one attempt's timeout a worker's claim on a delivery lasts at least:
the response's first 2 KiB (at most 1 s more) and recording the outcome fit in it, so a delivery
still being sent is never taken over and sent again by another worker."""

DB_CONNECTIONS_PER_HOST = 16
"""Connections all worker processes of one `oms serve` share by default: Postgres runs order
placement best with about 8-16 transactions in flight (more only queue on the hot stock rows)."""


class Settings(BaseSettings):
    """Every setting is documented in the README's Configuration table."""

    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+asyncpg://...). Unset: start an embedded Postgres.",
    )
    data_dir: Path = Field(
        default=Path(".oms"), description="Folder for the embedded Postgres data and its log."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default_factory=_default_workers)
    db_pool_size: int | None = Field(
        default=None,
        description="Database connections per worker process. Default: 16 / workers, at "
        "least 4, so one `oms serve` keeps about 16 transactions in flight.",
    )
    db_max_overflow: int = Field(
        default=0,
        description="Extra connections under bursts. 0 by default: overflow connections are "
        "closed and reopened as load varies, and each new one costs Postgres a process start "
        "and the statement preparations; requests wait for a pooled one instead.",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=0,
        description="Requests one worker process runs at once; the others wait their turn in "
        "arrival order, before any of their work (health, readiness and metrics never wait). "
        "Default: the worker's database pool size, so a request let in finds a connection "
        "free. 0: no limit.",
    )
    admission_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest wait for a turn (`max_in_flight`); then the request answers 503 "
        "`server_busy` with Retry-After, having done nothing. Default: `db_pool_timeout_s` "
        "(the wait it replaces: a request let in does not wait for a connection).",
    )
    db_pool_pre_ping: bool = Field(
        default=False,
        description="Test a pooled connection before each use (three round trips with asyncpg). "
        "Off, a connection broken by a database restart fails the request using it (503 "
        "`database_unavailable` with Retry-After) and the pool reconnects.",
    )
    db_pool_recycle_s: float = Field(
        default=1800.0, description="Replace pooled connections older than this."
    )
    db_pool_timeout_s: float = Field(
        default=5.0,
        description="Longest wait for a pooled connection when all are in use; then the request "
        "answers 503 `database_unavailable` with Retry-After.",
    )
    db_connect_timeout_s: float = Field(
        default=5.0,
        description="Longest wait to open a new connection, PostgreSQL's startup handshake "
        "included; then 503 `database_unavailable`.",
    )
    db_statement_timeout_ms: int = Field(
        default=10_000,
        description="PostgreSQL's `statement_timeout` and `lock_timeout` for oms sessions: the "
        "server cancels a longer statement or lock wait (503 `database_unavailable`), and the "
        "connection stays in use.",
    )
    db_command_timeout_s: float | None = Field(
        default=None,
        description="Client-side bound on each round trip to PostgreSQL (asyncpg "
        "`command_timeout`), for a server that does not answer at all (hung, paused, a network "
        "partition): the request answers 503 `database_unavailable` and the connection is "
        "discarded, never reused. Default: the statement timeout + 2 s, so that the server's "
        "own timeout, which keeps the connection, fires first. A request waits for an "
        "unresponsive database at most `db_request_bound_s`: pool timeout + connect timeout + "
        "this.",
    )
    max_body_bytes: int = 262_144
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A request's line and headers must arrive within this many seconds of its "
        "first byte (a new connection: of the connection); else 408 and the connection is "
        "closed (closed without an answer if nothing came at all).",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request's body must arrive within this many seconds of its headers "
        "(the default allows the largest body at about 9 KB/s); else 408 and the connection "
        "is closed.",
    )
    http_max_header_bytes: int = Field(
        default=32_768,
        ge=1024,
        description="Largest request line plus headers; larger gets 431 and the connection "
        "is closed.",
    )
    http_keepalive_timeout_s: float = Field(
        default=75.0,
        gt=0,
        description="An idle kept-alive connection is closed after this. Longer than the idle "
        "timeouts of common clients and proxies (httpx 5 s, aiohttp 15 s, nginx and AWS ALB "
        "60 s), so that the client, not the server, closes an idle connection: a server closing "
        "it can cross a request the client is sending on it, which then gets no answer. Behind "
        "a proxy with a longer idle timeout, set it above the proxy's.",
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections (or requests in progress) per worker process beyond "
        "which a request gets 503 `server_busy` with Retry-After.",
    )
    http_backlog: int = Field(
        default=2048,
        ge=1,
        description="Connections the kernel queues for `oms serve` before it accepts them (a "
        "burst of new clients waits there instead of being refused; capped by the kernel's "
        "net.core.somaxconn).",
    )
    max_order_lines: int = 250
    idempotency_ttl_hours: int = 24
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    webhook_tolerance_s: int = 300
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Deadline of one outbound attempt: DNS, connect, send, and the response's "
        "status line. A 2xx within it is a success, never sent again (the body is only logged, "
        "read for at most 1 s more); no answer within it is a failed attempt, retried with "
        "backoff with the same webhook-id: the receiver may have got it (at least once).",
    )
    webhook_max_attempts: int = Field(default=15, description="Attempts before a delivery is dead.")
    webhook_backoff_base_s: float = Field(default=5.0, description="First retry delay (jittered).")
    webhook_backoff_max_s: float = Field(default=3600.0, description="Cap on one retry delay.")
    webhook_lease_s: float = Field(
        default=60.0,
        description="How long a worker holds a delivery it claimed before another worker may "
        "take it over (a worker that died mid-delivery). At least the timeout + "
        f"{WEBHOOK_LEASE_MARGIN_S:g} s, so a delivery still in flight is never sent twice.",
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        description="Most requests in flight to one subscription at once (all workers "
        "together): a slow or hanging endpoint occupies at most this many of a worker's "
        "`worker_concurrency` slots, and the others keep flowing.",
    )
    webhook_allow_private_targets: bool = Field(
        default=False,
        description="Let subscriptions target loopback, private, link-local and other "
        "non-public addresses (local development). Off, they are refused when saved (422) and "
        "at each delivery, after resolving the name. Cloud metadata addresses are refused "
        "always.",
    )
    webhook_disable_after_failures: int = Field(
        default=50, description="Disable an endpoint after this many failed attempts in a row..."
    )
    webhook_disable_after_s: float = Field(
        default=86_400.0, description="...that have kept failing for at least this long."
    )
    worker_poll_interval_s: float = Field(default=1.0, description="Relay sleep when idle.")
    worker_batch_size: int = Field(
        default=50,
        description="Most deliveries claimed at once (never more than free send slots).",
    )
    worker_concurrency: int = Field(
        default=16, ge=1, description="Parallel sends per worker (over all endpoints)."
    )
    outbox_gap_grace_s: float = Field(
        default=300.0,
        description="How long the relay waits for an outbox id gap (an uncommitted transaction).",
    )
    inbox_sweep_interval_s: float = Field(
        default=30.0, description="How often the worker retries pending inbox events."
    )
    wave_check_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the worker checks whether a channel's wave is due "
        "(`PUT /v1/wave-policies/{channel}`: schedule, pool size, cut-off).",
    )
    expiry_sweep_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the worker cancels unpaid orders past their expiry policy "
        "(`PUT /v1/expiry-policies/{channel}/{payment_method}`).",
    )
    handling_time_hours: float = Field(
        default=48.0,
        gt=0,
        description="A shipment of a ready order not picked within this many hours is a "
        "blocker (`GET /v1/orders/{id}/blockers`, kind `late_pick`)",
    )
    console_enabled: bool = Field(
        default=True,
        description="Serve the operations console at `/console` (sign in with an API key).",
    )
    console_session_idle_minutes: float = Field(
        default=30.0,
        gt=0,
        description="A console session unused this long ends (sign in again).",
    )
    console_session_max_hours: float = Field(
        default=12.0,
        gt=0,
        description="A console session ends this long after sign-in, however active.",
    )
    # -- stores (#19) --
    pickup_window_hours: int = Field(
        default=72,
        gt=0,
        description="Click and collect: hours a ready order waits at its store before the "
        "worker marks it uncollected (per store: `PUT /v1/stores/{code}/policy`).",
    )
    pickup_uncollected_action: Literal["cancel", "refund"] = Field(
        default="cancel",
        description="What an uncollected pickup does to its order: `cancel` (stock released, "
        "money left to a person) or `refund` (cancelled, and what was captured refunded).",
    )
    pickup_max_code_attempts: int = Field(
        default=5, ge=1, le=20, description="Wrong collection codes before a pickup is locked."
    )
    pickup_sweep_interval_s: float = Field(
        default=60.0, gt=0, description="How often the worker looks for uncollected pickups."
    )
    stock_feed_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="The stock feed's coalescing: at most one `inventory.availability_changed` "
        "per SKU and channel per this many seconds, carrying the latest figure",
    )
    stock_feed_events: bool = Field(
        default=True,
        description="The worker computes the stock feed's events (the change feed "
        "`GET /v1/inventory/changes` works either way)",
    )
    ledger_seal_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the worker numbers and hash-chains new ledger movements "
        "(`GET /v1/inventory/ledger` also does before each page)",
    )
    # -- delivery promises and purchasing (#18) --
    sla_at_risk_hours: float = Field(
        default=4.0,
        ge=0,
        description="A shipment not shipped this many hours before its `ship_by` is announced "
        "`shipment.at_risk` (and `shipment.late` once `ship_by` has passed)",
    )
    sla_sweep_interval_s: float = Field(
        default=60.0, gt=0, description="How often the worker looks for shipments at risk or late."
    )
    reorder_sweep_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the worker drafts purchase orders where a reorder policy with "
        "`auto_draft` saw its reorder point crossed.",
    )
    run_migrations_on_start: bool = True
    serve_worker: bool = Field(
        default=False,
        description="`oms serve` also runs `oms worker` (outbox relay) as a child process",
    )
    # -- messages to customers and the tracking page (issue 22; README "Messages to customers")
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server for customer emails (a provider saved with `PUT "
        "/v1/messages/providers/email` replaces these settings). Unset: no email is sent.",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls` (upgrade a plain connection, refused if the server cannot), "
        "`tls` (implicit TLS, usually port 465) or `none` (local relays only).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user name.")
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP AUTH password (never logged nor returned)."
    )
    smtp_timeout_s: float = Field(default=30.0, gt=0, le=300, description="One SMTP session.")
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) the SMTP server's certificate is checked against (a "
        "relay with a private CA). Unset: the system's trusted CAs.",
    )
    message_sender: str | None = Field(
        default=None, description="The From address of customer emails, e.g. `Shop <a@b.c>`."
    )
    message_fallback_language: str = Field(
        default="en",
        description="Language of a message when neither the order nor its channel's rules name "
        "one that has a template.",
    )
    message_max_attempts: int = Field(default=8, ge=1, description="Send attempts per message.")
    message_backoff_base_s: float = Field(default=30.0, gt=0, description="First retry delay.")
    message_backoff_max_s: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    message_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a worker holds a message it is sending; a message whose worker "
        "died is sent again after it (longer than `smtp_timeout_s` and `sms_timeout_s`).",
    )
    sms_timeout_s: float = Field(default=10.0, gt=0, le=300, description="One SMS request.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The address customers reach oms at: tracking links in messages start here.",
    )
    tracking_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key of the tracking links' HMAC (at least 32 characters). Unset: a random "
        "key is made once and kept in the database (`tracking_keys`).",
    )
    tracking_link_ttl_days: int = Field(
        default=90, ge=1, le=3650, description="Tracking links expire this long after a message."
    )

    @model_validator(mode="after")
    def _lease_outlasts_timeout(self) -> Settings:
        if self.webhook_lease_s < self.webhook_timeout_s + WEBHOOK_LEASE_MARGIN_S:
            raise ValueError(
                f"OMS_WEBHOOK_LEASE_S ({self.webhook_lease_s:g}) must be at least "
                f"OMS_WEBHOOK_TIMEOUT_S ({self.webhook_timeout_s:g}) + "
                f"{WEBHOOK_LEASE_MARGIN_S:g} s: a delivery still in flight would be sent again"
            )
        return self

    @property
    def effective_db_command_timeout_s(self) -> float:
        """``db_command_timeout_s``, or the statement timeout + 2 s."""
        if self.db_command_timeout_s is not None:
            return self.db_command_timeout_s
        return self.db_statement_timeout_ms / 1000 + 2.0

    @property
    def db_request_bound_s(self) -> float:
        """The longest a request waits on a database that does not answer (down or hung):
        a pooled connection (pool timeout), a new one (connect timeout; also after a failed
        pre-ping), one round trip (command timeout). Then it answers 503."""
        waits = (self.db_pool_timeout_s, self.db_connect_timeout_s)
        return sum(waits) + self.effective_db_command_timeout_s

    @property
    def effective_admission_timeout_s(self) -> float:
        """``admission_timeout_s``, or ``db_pool_timeout_s``."""
        if self.admission_timeout_s is not None:
            return self.admission_timeout_s
        return self.db_pool_timeout_s

    @property
    def effective_max_in_flight(self) -> int:
        """``max_in_flight``, or the worker's pool size (0: no limit)."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return self.effective_db_pool_size

    @property
    def effective_db_pool_size(self) -> int:
        """``db_pool_size``, or the share of DB_CONNECTIONS_PER_HOST of one worker process."""
        if self.db_pool_size is not None:
            return self.db_pool_size
        return max(4, DB_CONNECTIONS_PER_HOST // max(1, self.workers))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
