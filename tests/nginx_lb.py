"""A real nginx (Debian's) load balancer on loopback in front of gallery replicas, for tests.

The ``http {}`` part is what operators get from ``nbapps deploy nginx-config``
(:func:`nbapps.loadbalancer.nginx_config`); this module only wraps it in a main config of its own
(no daemon, its own prefix, pid, logs and temp folders under ``folder``) and runs nginx as a
subprocess, always stopped. Without the binary the test skips on a workstation and fails under
CI (``make test`` installs it with scripts/install-system-deps.sh).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbapps.loadbalancer import nginx_config
from tests.pg import free_port

NGINX_PATHS = ("/usr/sbin/nginx", "nginx")
_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d+) .* '
                       r"upstream=(?P<upstream>.*?) upstream_status=")


def find_nginx() -> str:
    for candidate in NGINX_PATHS:
        found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if found:
            return found
    message = "nginx is not installed (make test installs Debian's nginx)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError  # unreachable: skip raises


@dataclass(frozen=True)
class LogEntry:
    method: str
    path: str
    status: int
    #: the replicas nginx tried, in order (``a, b`` when a refused and b served)
    upstreams: tuple[str, ...]

    @property
    def route(self) -> str:
        """The path without its query."""
        return self.path.split("?", 1)[0]


@dataclass
class Nginx:
    url: str
    access_log: Path
    error_log: Path
    process: subprocess.Popen[bytes]

    def entries(self) -> list[LogEntry]:
        """The access log so far (nginx writes each line when its request ends)."""
        out = []
        text = self.access_log.read_text(encoding="utf-8", errors="replace") \
            if self.access_log.exists() else ""
        for line in text.splitlines():
            m = _LOG_LINE.search(line)
            if m:
                # "a, b" when a failed and b served; " : " between internal redirects
                ups = tuple(u for u in re.split(r",\s*|\s+:\s+", m["upstream"].strip())
                            if u and u != "-")
                out.append(LogEntry(m["method"], m["path"], int(m["status"]), ups))
        return out


def main_config(folder: Path, http_part: Path) -> str:
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers may read folder
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nmaster_process on;\nworker_processes 1;\n{user}"
            f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} notice;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n{temp}\n    include {http_part};\n}}\n")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = error_log.read_text() if error_log.exists() else ""
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # nginx has no readiness signal but its listening socket
    raise RuntimeError("nginx did not listen within 20 s")


@contextmanager
def running_nginx(folder: Path, replicas: Sequence[str], *, base_url: str = "/",
                  read_timeout: int = 60) -> Iterator[Nginx]:
    """nginx on a free loopback port balancing ``replicas`` (gallery URLs), stopped on exit."""
    binary = find_nginx()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access_log = folder / "access.log"
    http_part = folder / "nbapps.conf"
    http_part.write_text(nginx_config(replicas, listen=f"127.0.0.1:{port}", base_url=base_url,
                                      server_name="localhost", access_log=str(access_log),
                                      read_timeout=read_timeout),
                         encoding="utf-8")
    main = folder / "nginx.conf"
    main.write_text(main_config(folder, http_part), encoding="utf-8")
    error_log = folder / "error.log"
    cmd = [binary, "-p", str(folder), "-c", str(main), "-e", str(error_log)]
    subprocess.run([*cmd, "-t"], check=True, capture_output=True, timeout=30)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, error_log)
        yield Nginx(f"http://127.0.0.1:{port}", access_log, error_log, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown, workers too
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
