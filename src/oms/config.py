"""Settings, read from ``OMS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    """One API process per CPU, at most 8 (bench/load.py: on 2 CPUs shared with Postgres, 2
    processes beat 1 and 4; more processes than CPUs only add switching)."""
    return max(1, min(8, os.cpu_count() or 1))


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
    max_order_lines: int = 250
    idempotency_ttl_hours: int = 24
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    webhook_tolerance_s: int = 300
    webhook_timeout_s: float = Field(default=10.0, description="Outbound HTTP timeout per attempt.")
    webhook_max_attempts: int = Field(default=15, description="Attempts before a delivery is dead.")
    webhook_backoff_base_s: float = Field(default=5.0, description="First retry delay (jittered).")
    webhook_backoff_max_s: float = Field(default=3600.0, description="Cap on one retry delay.")
    webhook_lease_s: float = Field(
        default=60.0, description="How long a worker holds a delivery before others may take it."
    )
    webhook_disable_after_failures: int = Field(
        default=50, description="Disable an endpoint after this many failed attempts in a row..."
    )
    webhook_disable_after_s: float = Field(
        default=86_400.0, description="...that have kept failing for at least this long."
    )
    worker_poll_interval_s: float = Field(default=1.0, description="Relay sleep when idle.")
    worker_batch_size: int = Field(default=50, description="Deliveries claimed per round.")
    worker_concurrency: int = Field(default=16, description="Parallel sends per worker.")
    outbox_gap_grace_s: float = Field(
        default=300.0,
        description="How long the relay waits for an outbox id gap (an uncommitted transaction).",
    )
    inbox_sweep_interval_s: float = Field(
        default=30.0, description="How often the worker retries pending inbox events."
    )
    run_migrations_on_start: bool = True
    serve_worker: bool = Field(
        default=False,
        description="`oms serve` also runs `oms worker` (outbox relay) as a child process",
    )

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
    def effective_db_pool_size(self) -> int:
        """``db_pool_size``, or the share of DB_CONNECTIONS_PER_HOST of one worker process."""
        if self.db_pool_size is not None:
            return self.db_pool_size
        return max(4, DB_CONNECTIONS_PER_HOST // max(1, self.workers))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return Settings()
