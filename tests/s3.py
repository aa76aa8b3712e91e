"""A real S3-compatible server on loopback for tests: moto's server mode in a subprocess.

``python -m moto.server -H 127.0.0.1 -p 0`` listens on a free port (the port is read from its
first lines) and logs one line per request to stderr (werkzeug's access log), which
:meth:`MotoServer.requests` parses: tests count what really reached the server. Credentials
are moto's: any key and secret are accepted (:data:`CREDENTIALS`). The region is not us-east-1:
s3fs sends it as the new bucket's LocationConstraint, which S3 refuses for us-east-1.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

#: environment for processes that talk to the server with the AWS SDKs' own variables
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "nbapps-test", "AWS_SECRET_ACCESS_KEY": "nbapps-test",
               "AWS_DEFAULT_REGION": "eu-west-1"}
_PORT_RE = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
_REQUEST_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


class MotoServer:
    """``start()``, then :attr:`endpoint`; ``stop()`` always (the fixture's ``finally``)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self, timeout: float = 60.0) -> str:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _PORT_RE.search(self.log_path.read_text(errors="replace"))
            if m:
                self.endpoint = f"http://127.0.0.1:{m.group(1)}"
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # waiting for the server's first log line (no other signal)
        else:
            self.stop()
            raise RuntimeError("moto server did not start:\n" + self.log_path.read_text())
        if not self.endpoint:
            raise RuntimeError("moto server exited:\n" + self.log_path.read_text())
        httpx.get(f"{self.endpoint}/moto-api/", timeout=30)  # answers requests
        return self.endpoint

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def storage_options(self) -> dict[str, Any]:
        """fsspec (s3fs) storage options for this server."""
        return {"endpoint_url": self.endpoint, "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "client_kwargs": {"region_name": CREDENTIALS["AWS_DEFAULT_REGION"]}}

    def new_bucket_url(self, prefix: str = "bundles") -> str:
        """An ``s3://`` URL in a bucket of its own (the store creates the bucket)."""
        return f"s3://nbapps-{uuid.uuid4().hex[:12]}/{prefix}"

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the server has logged so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = _REQUEST_RE.search(line)
            if m:
                out.append((m.group("method"), m.group("path"), int(m.group("status"))))
        return out

    def mark(self) -> str:
        """Send a request of its own and wait until the server has logged it: every request
        answered before this call is then in :meth:`requests` too (lines are written as each
        request ends)."""
        token = f"/nbapps-mark-{uuid.uuid4().hex}"
        httpx.get(f"{self.endpoint}{token}", timeout=30)
        deadline = time.monotonic() + 30
        while not any(path == token for _, path, _ in self.requests()):
            assert time.monotonic() < deadline, "the moto server did not log the mark request"
            time.sleep(0.02)  # the log line is written just after the answer
        return token
