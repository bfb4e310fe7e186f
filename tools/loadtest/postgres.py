"""A PostgreSQL server of the suite's own: initdb into a temporary folder, on a
free loopback port, so it can be stopped for an outage without touching any
other server on the machine (the one on 5432 serves other people's tests).

PostgreSQL refuses to run as root; started by root, the server runs as the
`postgres` system user, which owns the folder.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tools.broker import free_port

BINARY_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER_WHEN_ROOT = "postgres"
DATABASE = "chat"
START_TIMEOUT_SECONDS = 60


class PostgresError(RuntimeError):
    """The private server could not be set up, started or stopped."""


def find_binaries() -> Path:
    """The newest installed server's bin folder (with initdb and pg_ctl)."""
    found = sorted(
        (p for p in Path("/").glob(BINARY_GLOB.lstrip("/")) if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresError(f"no PostgreSQL server binaries in {BINARY_GLOB} (initdb, pg_ctl)")
    return found[-1]


class PrivatePostgres:
    """One throw-away server. `start()` once to create it; `stop()`/`start()` again
    for an outage; `destroy()` at the end (also after a failure)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.bin = find_binaries()
        self._user = SERVER_USER_WHEN_ROOT if os.geteuid() == 0 else getpass.getuser()
        self._initialised = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
        as_user = self._user if os.geteuid() == 0 else None
        result = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=as_user,
            cwd=self.root,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise PostgresError(f"{args[0]} failed ({result.returncode}): {output.strip()}")

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = pwd.getpwnam(self._user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-U", self._user, "--auth=trust")
        self._initialised = True

    def start(self) -> None:
        """Start (creating the cluster and the database the first time) and wait
        until it accepts connections."""
        first = not self._initialised
        if first:
            self._initdb()
        # Loopback only; the socket lives in the folder, not in /var/run.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data_dir), "-l", str(self.log_path),
            "-o", options,
        )  # fmt: skip
        if first:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def postmaster_pid(self) -> int | None:
        """The running server's main process (from its pid file), if running."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """A fast shutdown: open sessions are ended, as in a real restart."""
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def destroy(self) -> None:
        if self._initialised:
            with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server, stopped and deleted on the way out."""
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="chat-load-pg-")))
    try:
        server.start()
        yield server
    finally:
        server.destroy()
