"""An error in one of the worker's side loops (messages, waves) is never lost: not even when it
comes as the worker is being stopped (the main loop, woken by the stop, would otherwise end
without looking at it and the worker exit as if all went well)."""

from __future__ import annotations

import asyncio

import pytest

from tests.webhooks.conftest import RelayFactory


async def test_a_side_loop_error_raised_as_the_worker_stops_is_raised_by_run(
    relay_factory: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = relay_factory(worker_poll_interval_s=5.0)
    stop = asyncio.Event()

    async def failing_messages(*, force: bool = False) -> int:
        await asyncio.sleep(0.5)  # the main loop is idle, sleeping its poll interval
        stop.set()  # e.g. SIGTERM while a round of messages runs ...
        raise RuntimeError("messages round failed")  # ... and the round fails

    monkeypatch.setattr(relay.messages, "run_when_due", failing_messages)
    with pytest.raises(RuntimeError, match="messages round failed"):
        await asyncio.wait_for(relay.run(stop=stop), timeout=15)
