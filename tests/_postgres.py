"""A throwaway PostgreSQL server for the tests: one cluster a session, one schema a test.

The cluster lives in a fresh folder under the system's temporary directory and listens only on
a Unix socket there (no TCP port, nothing another process on the machine can collide with).
It is written with ``fsync`` off: nothing in it outlives the session.

Each test gets a new empty schema in the cluster's one database, named in its URL as the
connection's ``search_path``: to the store it is an empty database (its tables, sequences,
``alembic_version`` all land there), and it costs a few milliseconds where ``CREATE DATABASE``
costs a quarter of a second. The URL's ``application_name`` is the schema's name, so the
connections a test leaves open are closed when its schema is dropped. PostgreSQL refuses to run
as root, so under root ``initdb`` and the server run as the ``postgres`` user (Debian's
package makes it), and the folder is that user's. The server is a child of the test process
with a parent-death signal, so a killed test run does not leave it running (its folder, about
40 MB, stays in the temporary directory then).

Where a piece is missing (the binaries, the ``postgres`` user, the psycopg driver) or the server
does not start, :func:`start_cluster` raises :class:`PostgresUnavailable` with the reason, and
the tests that need PostgreSQL are skipped with it.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_bin_dir", "start_cluster"]

#: Where Debian's ``postgresql-<N>`` package puts ``initdb``, ``pg_ctl`` and ``postgres``.
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The one database of the cluster, holding one schema per test.
DATABASE = "selfimprove"
#: Seconds to wait for the server to accept connections.
START_TIMEOUT_S = 30.0
INSTALL_HINT = "make test installs Debian's postgresql where it can (root and apt-get)"
#: ``initdb``'s options after the data directory: trust on the private socket, no fsync.
INITDB_OPTIONS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
#: The server's settings: the socket alone, and nothing written twice or waited for on disk.
SERVER_SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


class PostgresUnavailable(Exception):
    """No throwaway PostgreSQL can run here; the message says why."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on ``PATH``, else Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        folder = Path(on_path).resolve().parent
        if (folder / "postgres").is_file():
            return folder

    def major(p: Path) -> int:
        m = re.search(r"/(\d+)/bin$", str(p))
        return int(m.group(1)) if m else -1

    for folder in sorted(map(Path, glob.glob(DEBIAN_BIN_GLOB)), key=major, reverse=True):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


@dataclass
class PostgresCluster:
    """A running throwaway server and an admin connection to its database.

    Attributes:
        root: The folder holding the data directory, the socket and the server's log.
        version: The server's version string (``SHOW server_version``).
    """

    root: Path
    version: str
    _server: subprocess.Popen[bytes]
    _admin: Any  # a psycopg.Connection in autocommit mode
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, schema: str) -> str:
        """A SQLAlchemy URL (psycopg 3) whose connections work in ``schema``, over the socket."""
        return (
            f"postgresql+psycopg://postgres@/{DATABASE}?host={self.root}"
            f"&application_name={schema}&options=-csearch_path%3D{schema}"
        )

    def create_schema(self) -> tuple[str, str]:
        """A new empty schema: ``(name, URL)``."""
        name = f"t{next(self._names)}"
        self._admin.execute(f'CREATE SCHEMA "{name}"')
        return name, self.url(name)

    def drop_schema(self, name: str) -> None:
        """Drop ``name`` and all in it, closing whatever connections a test left open to it."""
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        self._admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def stop(self) -> None:
        """Stop the server at once (nothing in it is kept) and remove its folder."""
        with contextlib.suppress(Exception):
            self._admin.close()
        _stop(self._server)
        shutil.rmtree(self.root, ignore_errors=True)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _as_server_user(argv: list[str]) -> tuple[list[str], int | None, int | None]:
    """``argv`` run as the user the server may run as: ``(argv, uid, gid)`` of that user.

    Not root: the current user. Root: ``postgres``, through ``setpriv`` (util-linux), which
    also gives the server a parent-death signal (fast shutdown) for when the tests are killed.

    Raises:
        PostgresUnavailable: Root without a ``postgres`` user or without ``setpriv``.
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        prefix = [setpriv, "--pdeathsig", "INT", "--"] if setpriv else []
        return [*prefix, *argv], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' user to run the server as "
            f"(PostgreSQL refuses root); {INSTALL_HINT}"
        ) from None
    if setpriv is None:
        raise PostgresUnavailable("running as root and setpriv (util-linux) is not installed")
    prefix = [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--pdeathsig",
        "INT",
        "--",
    ]
    return [*prefix, *argv], user.pw_uid, user.pw_gid


def start_cluster() -> PostgresCluster:
    """``initdb`` a new cluster in a fresh temporary folder and start its server.

    Raises:
        PostgresUnavailable: The driver or the binaries are missing, or the server did not
            start (the reason and the end of its log in the message).
    """
    try:
        import psycopg
    except ImportError:
        raise PostgresUnavailable(
            "the psycopg driver is not installed (pip install 'selfimprove[postgres]')"
        ) from None
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            f"PostgreSQL's initdb is not on PATH nor in {DEBIAN_BIN_GLOB}; {INSTALL_HINT}"
        )
    root = Path(tempfile.mkdtemp(prefix="selfimprove-pg-"))
    try:
        initdb, uid, gid = _as_server_user(
            [str(bin_dir / "initdb"), "-D", str(root / "data"), *INITDB_OPTIONS]
        )
        if uid is not None and gid is not None:
            os.chown(root, uid, gid)
        done = subprocess.run(initdb, cwd=root, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {_last_lines(done.stderr or done.stdout)}")
        settings = [f"--{k.replace('_', '-')}={v}" for k, v in SERVER_SETTINGS.items()]
        server_argv, _, _ = _as_server_user(
            [str(bin_dir / "postgres"), "-D", str(root / "data"), "-k", str(root), *settings]
        )
        log = (root / "server.log").open("wb")
        server = subprocess.Popen(server_argv, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        log.close()
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL could not be started: {exc}") from None
    except PostgresUnavailable:
        shutil.rmtree(root, ignore_errors=True)
        raise
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            admin = psycopg.connect(
                host=str(root), user="postgres", dbname="postgres", autocommit=True
            )
            break
        except psycopg.OperationalError as exc:
            if server.poll() is not None or time.monotonic() > deadline:
                _stop(server)
                log_text = (root / "server.log").read_text(errors="replace")
                shutil.rmtree(root, ignore_errors=True)
                raise PostgresUnavailable(
                    f"the PostgreSQL server did not start ({str(exc).strip()}): "
                    f"{_last_lines(log_text)}"
                ) from None
            time.sleep(0.05)
    admin.execute(f'CREATE DATABASE "{DATABASE}"')
    admin.close()
    admin = psycopg.connect(host=str(root), user="postgres", dbname=DATABASE, autocommit=True)
    version = str(admin.execute("SHOW server_version").fetchone()[0])
    return PostgresCluster(root, version, server, admin)


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])
