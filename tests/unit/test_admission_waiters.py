"""The admission gate (oms.shared.admission) and its waiters: one whose client goes away leaves
the line at once (it is not run later, its place is not held, the access line says 499), and a
request that lends its turn (`lent`) lets the next in, then takes a turn back ahead of those
still waiting."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from oms.shared.admission import AdmissionGate, lent
from oms.shared.middleware import RequestContextMiddleware


class _App:
    """Requests wait until the test releases them; ``/v1/lend-*`` lends its turn meanwhile."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    def event(self, name: str) -> asyncio.Event:
        return self.release.setdefault(name, asyncio.Event())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"].rsplit("/", 1)[-1]
        self.started.append(name)
        if name.startswith("lend"):
            async with lent(scope):
                await self.event(name).wait()
            self.started.append(name + ":back")
        else:
            await self.event(name).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": name.encode()})


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


class _Client:
    """One request's connection: ``leave()`` is the client going away."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def _until(cond: Any) -> None:
    for _ in range(400):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def _call(app: Any, path: str) -> tuple[_Client, asyncio.Task[None]]:
    c = _Client()
    return c, asyncio.create_task(app(_scope(path), c.receive, c.send))


async def test_a_waiter_whose_client_leaves_is_dropped_at_once_and_never_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=1, timeout_s=30)
    app = RequestContextMiddleware(gate, max_body_bytes=1000)
    _, first = _call(app, "/v1/a")
    await _until(lambda: inner.started == ["a"])
    leaver, left = _call(app, "/v1/b")
    _, third = _call(app, "/v1/c")
    await _until(lambda: gate.waiting == 2)

    caplog.set_level(logging.INFO, logger="oms.access")
    leaver.gone.set()
    await asyncio.wait_for(left, 2)  # not after its 30 s wait, nor after "a" ends
    assert gate.waiting == 1
    assert [r.status for r in caplog.records if r.path == "/v1/b"] == [499]  # type: ignore[attr-defined]

    inner.event("a").set()
    await first
    await _until(lambda: "c" in inner.started)
    inner.event("c").set()
    await third
    assert inner.started == ["a", "c"]  # b never ran
    assert gate._free == 1 and gate.waiting == 0  # noqa: SLF001 - every turn came back


async def test_a_lent_turn_lets_the_next_in_and_comes_back_ahead_of_the_line() -> None:
    inner = _App()
    gate = AdmissionGate(inner, limit=1, timeout_s=30)
    _, lender = _call(gate, "/v1/lend-1")
    await _until(lambda: inner.started == ["lend-1"])
    _, x = _call(gate, "/v1/x")
    await _until(lambda: "x" in inner.started)  # let in while the lender solves
    _, y = _call(gate, "/v1/y")
    await _until(lambda: gate.waiting == 1)
    inner.event("lend-1").set()  # the lender wants its turn back: ahead of y
    await _until(lambda: gate.waiting == 2)
    inner.event("x").set()
    await x
    await lender
    assert inner.started == ["lend-1", "x", "lend-1:back"]
    await _until(lambda: "y" in inner.started)
    inner.event("y").set()
    await y
    assert gate._free == 1 and gate.waiting == 0  # noqa: SLF001


class _Echo:
    """Answers with the request body it reads; ``/v1/hold`` first waits for the test."""

    def __init__(self) -> None:
        self.hold = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/v1/hold":
            await self.hold.wait()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_a_waiter_gets_its_body_whole_and_a_streamed_one_is_not_read_ahead_unbounded() -> (
    None
):
    inner = _Echo()
    gate = AdmissionGate(inner, limit=1, timeout_s=30)
    app = RequestContextMiddleware(gate, max_body_bytes=10_000)
    holder, held = _call(app, "/v1/hold")
    await _until(lambda: gate._free == 0)  # noqa: SLF001

    # a POST (read whole before the gate) waits, then the app reads it as sent
    post = _Client()
    scope = _scope("/v1/post") | {
        "method": "POST",
        "headers": [(b"content-type", b"application/json")],
    }
    post._body_sent = True  # noqa: SLF001 - its body comes from `chunks`
    chunks = [{"type": "http.request", "body": b'{"a": ', "more_body": True}]
    chunks.append({"type": "http.request", "body": b"1}", "more_body": False})

    async def post_receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else await post.receive()

    posting = asyncio.create_task(app(scope, post_receive, post.send))
    # a DELETE streaming 1 MiB in 1 KiB pieces (no body limit applies to it) waits too
    pieces = 1024
    read = [0]

    async def delete_receive() -> dict[str, Any]:
        read[0] += 1
        await asyncio.sleep(0)
        last = read[0] == pieces
        return {"type": "http.request", "body": b"x" * 1024, "more_body": not last}

    deleter = _Client()
    deleting = asyncio.create_task(
        app(_scope("/v1/delete") | {"method": "DELETE"}, delete_receive, deleter.send)
    )
    await _until(lambda: gate.waiting == 2)
    await asyncio.sleep(0.1)
    assert read[0] <= 66  # read ahead up to 64 KiB, then left alone
    inner.hold.set()
    await held
    await posting
    assert post.sent[-1]["body"] == b'{"a": 1}'
    await deleting
    assert read[0] == pieces  # the app read all of it, in order, after its turn came
    assert deleter.sent[-1]["body"] == b"x" * 1024 * pieces
    assert holder.sent[0]["status"] == 200
