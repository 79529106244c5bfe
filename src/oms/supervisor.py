"""`oms serve`'s worker processes, each accepting connections on a listening socket of its own.

uvicorn gives all its worker processes one listening socket. When several connections arrive
at once (clients opening their keep-alive pools, a load balancer reconnecting after a deploy),
the worker whose event loop wakes first accepts every one waiting, and a kept-alive connection
stays with the worker that accepted it: measured with 32 clients on two workers, 30
connections went to one worker and 2 to the other, which then idled while the first queued
(`bench/results/placement-concurrency.md`). Here every worker gets a socket of its own, all
bound to the same address with ``SO_REUSEPORT``: the kernel spreads new connections over them
by a hash of the connection's addresses, whatever the workers are doing.

The supervisor is uvicorn's (signals, health checks, replacing a worker that died, graceful
restart on SIGHUP); only which socket a worker gets differs, and a replacement worker gets the
socket of the worker it replaces. Adding or removing workers at run time (SIGTTIN, SIGTTOU) is
not offered: the sockets are bound once, at start.
"""

from __future__ import annotations

import logging
import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("uvicorn.error")


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def worker_sockets(config: Config, workers: int) -> list[socket.socket]:
    """``workers`` sockets bound to the configured address with ``SO_REUSEPORT`` (not listening
    yet: each worker listens on its own). With port 0 they all join the port the first got."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    port = config.port
    sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    log.info(
        "oms serving on http://%s:%d with %d workers, a listening socket each",
        config.host,
        port,
        workers,
    )
    return sockets


class BalancedMultiprocess(Multiprocess):
    """uvicorn's ``Multiprocess``, worker ``i`` (and any replacement) on ``sockets[i]``."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.own = sockets
        self.processes_num = len(sockets)

    def _new(self, idx: int) -> Process:
        process = Process(self.config, [self.own[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        for idx in range(self.processes_num):
            self.processes.append(self._new(idx))

    def restart_all(self) -> None:
        """SIGHUP: replace each worker in turn, the new one serving before the old one stops."""
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new(idx)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("worker [%s] not ready in time; keeping [%s]", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: killed; dead: reaped
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.info("worker [%s] died; replacing it", process.pid)
            self.processes[idx] = self._new(idx)

    def handle_ttin(self) -> None:
        log.info("SIGTTIN ignored: oms serve's workers have a socket each, bound at start")

    def handle_ttou(self) -> None:
        log.info("SIGTTOU ignored: oms serve's workers have a socket each, bound at start")
