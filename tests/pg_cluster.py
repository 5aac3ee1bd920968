"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, listening on
127.0.0.1 at a free port, with a superuser whose password contains `/` and `@`; stopped by PID.

Skipped where the server binaries are missing, except under CI (CI=true), where that fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

PASSWORD = "pa/ss@w0rd-9x"
USER = "harness"


def _bin_dir() -> Path | None:
    candidates = [os.environ.get("PG_BIN"), *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")),
                                                     reverse=True)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir, self.root = bin_dir, root
        self.data = root / "data"
        self.port = _free_port()
        # initdb refuses to run as root: run the server as the `postgres` user where we are root.
        self.prefix = (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [])

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, text=True)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.prefix:
            shutil.chown(self.root, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile",
                  str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200",
                  "start")

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def stop(self) -> None:
        try:
            pid = self.pid()
        except (FileNotFoundError, ValueError, IndexError):
            return
        os.kill(pid, signal.SIGINT)  # "fast" shutdown
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def url(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{quote(PASSWORD, safe='/')}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing (apt-get install postgresql-15)")
        pytest.skip("PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    cluster = Cluster(bin_dir, root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
