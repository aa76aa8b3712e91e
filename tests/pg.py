"""A real, throwaway PostgreSQL server for tests (Debian's initdb/pg_ctl, loopback, trust auth).

``PostgresServer.start()`` runs ``initdb`` in a fresh folder under /tmp, then ``pg_ctl start`` on
a free 127.0.0.1 port with its unix socket in that folder (durability settings off: tests only).
As root the server runs as the ``postgres`` OS user (initdb refuses root). ``stop()`` always
shuts it down and removes the folder; an ``atexit`` hook does it too if a test run is killed.

Databases: :meth:`PostgresServer.template` migrates the nbapps schema once into a template
database; :meth:`PostgresServer.fresh_database` copies it (``CREATE DATABASE ... TEMPLATE``),
which is much faster than migrating per test.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PG_GLOB = "/usr/lib/postgresql/*/bin"


def find_pg_bin() -> Path | None:
    """Newest ``/usr/lib/postgresql/<ver>/bin`` holding initdb and pg_ctl, or None."""
    candidates = []
    for d in glob.glob(PG_GLOB):
        path = Path(d)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            try:
                candidates.append((float(path.parent.name), path))
            except ValueError:
                candidates.append((0.0, path))
    if not candidates:
        found = shutil.which("pg_ctl")
        if found and shutil.which("initdb"):
            return Path(found).parent
        return None
    return max(candidates)[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = 0
        self.base: Path | None = None
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None
        self._counter = 0
        self._template: str | None = None
        self._started = False

    # -- process management --------------------------------------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        return subprocess.run(
            cmd, check=check, capture_output=True, text=True, timeout=timeout,
            user=self._run_as, cwd=str(self.base), env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def start(self) -> PostgresServer:
        self.base = Path(tempfile.mkdtemp(prefix="nbapps-pg-", dir="/tmp"))
        if self._run_as:
            shutil.chown(self.base, user=self._run_as, group=None)
        atexit.register(self.stop)
        data = self.base / "data"
        try:
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr or exc.stdout}") from exc
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200 -c shared_buffers=32MB")
            res = self._run("pg_ctl", "-D", str(data), "-o", opts, "-l",
                            str(self.base / "server.log"), "-w", "-t", "60", "start",
                            check=False)
            if res.returncode == 0:
                self._started = True
                self._wait_ready()
                return self
            last_error = res.stderr + res.stdout + self._log_tail()
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _log_tail(self) -> str:
        try:
            return (self.base / "server.log").read_text()[-2000:] if self.base else ""
        except OSError:
            return ""

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.base is None:
            return
        base, self.base = self.base, None
        try:
            if self._started:
                self._started = False
                cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate",
                       "-w", "-t", "30", "stop"]
                subprocess.run(cmd, capture_output=True, timeout=60, user=self._run_as,
                               cwd=str(base), check=False)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        tmpl = f" TEMPLATE {template}" if template else ""
        self._admin(f'CREATE DATABASE "{name}"{tmpl}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def template(self) -> str:
        """Name of a database holding the migrated nbapps schema (created once)."""
        if self._template is None:
            from nbapps.catalog import open_catalog

            name = "nbapps_template"
            url = self.create_database(name)
            open_catalog(url).close()
            self._template = name
        return self._template

    def fresh_database(self, migrated: bool = True) -> tuple[str, str]:
        """A new database (a copy of the migrated template, or empty): ``(name, url)``."""
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        url = self.create_database(name, self.template() if migrated else None)
        return name, url
