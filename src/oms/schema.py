"""Run Alembic migrations programmatically (``oms migrate``, ``oms serve``, tests)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def migrations_dir() -> Path:
    """OMS_MIGRATIONS_DIR, else the repository's ``migrations/``, else ``./migrations``."""
    env = os.environ.get("OMS_MIGRATIONS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "migrations", Path.cwd() / "migrations"]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("cannot find the migrations folder; set OMS_MIGRATIONS_DIR")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_head(url: str) -> None:
    """``alembic upgrade head`` against ``url`` (blocking; call from a thread inside a loop)."""
    command.upgrade(alembic_config(url), "head")
