"""A throwaway PostgreSQL 15 cluster for tests and the benchmark: initdb + pg_ctl in a temp dir,
listening on 127.0.0.1 at a free port with a password (scram), stopped and removed at the end.

PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
OS user (``runuser``), and the temp dir is handed to it. Nothing here skips: if the server
cannot start, :class:`ServerError` says why (the binaries are installed by
``scripts/system-deps.sh``).

Run ``python tests/postgres/_server.py`` to get a cluster in the foreground (prints the URL;
Ctrl-C or SIGTERM stops and removes it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

BIN = Path(os.environ.get("DYNWF_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "dynwf"
PASSWORD = "dynwf-test-pw"  # a throwaway cluster bound to 127.0.0.1
OS_USER = "postgres"


class ServerError(RuntimeError):
    """The test server could not be set up (with the command output that says why)."""


@dataclass
class Server:
    root: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_server_user() -> list[str]:
    return ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []


def _run(args: list[str], what: str) -> None:
    done = subprocess.run([*_as_server_user(), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(*, fsync: bool = True) -> Server:
    """initdb + start a cluster; the caller must :func:`stop` it."""
    for tool in ("initdb", "pg_ctl"):
        if not (BIN / tool).exists():
            raise ServerError(
                f"{BIN / tool} is missing: install PostgreSQL 15 (scripts/system-deps.sh, "
                "or apt-get install -y postgresql), or point DYNWF_PG_BIN at its bin directory"
            )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise ServerError("running as root but runuser is missing; PostgreSQL refuses root")
    root = Path(tempfile.mkdtemp(prefix="dynwf-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, OS_USER, OS_USER)
        data = root / "data"
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, OS_USER, OS_USER)
        _run(
            [
                str(BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            "initdb",
        )
        last: ServerError | None = None
        for _ in range(5):  # a free port can be taken between probe and bind
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
                f"-c fsync={'on' if fsync else 'off'} -c max_connections=200"
            )
            try:
                _run(
                    [
                        str(BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(root / "log"),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    "pg_ctl start",
                )
            except ServerError as error:
                log = root / "log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                last = ServerError(f"{error}\nserver log:\n{detail}")
                continue
            server = Server(root, port)
            _wait_ready(server)
            return server
        raise last or ServerError("pg_ctl start failed")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.url(), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise ServerError(f"server on port {server.port} never accepted: {error}") from None
            time.sleep(0.05)


def stop(server: Server) -> None:
    with contextlib.suppress(ServerError):
        _run(
            [str(BIN / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate", "-w", "stop"],
            "pg_ctl stop",
        )
    shutil.rmtree(server.root, ignore_errors=True)


@contextlib.contextmanager
def running(*, fsync: bool = True) -> Iterator[Server]:
    server = start(fsync=fsync)
    try:
        yield server
    finally:
        stop(server)


def _serve() -> None:
    """Foreground: print the URL, stop and remove the cluster on Ctrl-C or SIGTERM."""

    def stop_on(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on)
    with running() as server, contextlib.suppress(KeyboardInterrupt):
        print(server.url(), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    _serve()
