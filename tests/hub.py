"""A real JupyterHub on loopback for tests (``python -m jupyterhub``, no proxy process).

The Hub runs without configurable-http-proxy: its proxy class is a no-op written into the
config, and tests talk to the Hub's own port. A service ``tester`` holds an admin token for the
test's REST calls (``Hub.call``). Used by tests/test_hub_auth.py and tests/test_hub_runner.py.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

NO_PROXY_CONFIG = """
from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    \"\"\"No configurable-http-proxy: the test talks to the Hub's own port.\"\"\"

    should_start = False

    async def add_route(self, routespec, target, data):
        pass

    async def delete_route(self, routespec):
        pass

    async def get_all_routes(self):
        return {}


c.JupyterHub.proxy_class = NoProxy
"""

TESTER_SCOPES = ["admin:users", "admin:groups", "tokens", "read:roles"]


@dataclass
class Hub:
    url: str  # http://127.0.0.1:<port>/hub/
    api: str
    admin_token: str
    process: subprocess.Popen[bytes]
    log: Path

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.api}/{path}", timeout=30,
                             headers={"Authorization": f"token {self.admin_token}"}, **kw)

    def user_token(self, name: str, scopes: list[str]) -> str:
        r = self.call("POST", f"users/{name}/tokens", json={"scopes": scopes, "note": "test"})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


@contextmanager
def running_hub(folder: Path, port: int, config: str, *,
                services: list[dict[str, Any]] = (),  # type: ignore[assignment]
                roles: list[dict[str, Any]] = (),  # type: ignore[assignment]
                tester_scopes: list[str] = TESTER_SCOPES) -> Iterator[Hub]:
    """A Hub on 127.0.0.1:``port`` with ``config`` (Python lines), the ``services`` and
    ``roles`` given plus the ``tester`` service; stopped (process group) on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    admin_token = secrets.token_hex(32)
    hub_url = f"http://127.0.0.1:{port}"
    all_services = [*services, {"name": "tester", "api_token": admin_token}]
    all_roles = [*roles, {"name": "tester", "services": ["tester"], "scopes": tester_scopes}]
    text = NO_PROXY_CONFIG + textwrap.dedent(f"""
        c.JupyterHub.bind_url = {hub_url!r}
        c.JupyterHub.hub_bind_url = {hub_url!r}
        c.JupyterHub.db_url = {f"sqlite:///{folder / 'hub.sqlite'}"!r}
        c.JupyterHub.cookie_secret_file = {str(folder / 'hub_cookie_secret')!r}
        c.JupyterHub.pid_file = {str(folder / 'hub.pid')!r}
        c.JupyterHub.services = {all_services!r}
        c.JupyterHub.load_roles = {all_roles!r}
    """) + textwrap.dedent(config)
    (folder / "jupyterhub_config.py").write_text(text)
    log = folder / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f",
                                 str(folder / "jupyterhub_config.py")], cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(url=f"{hub_url}/hub/", api=f"{hub_url}/hub/api", admin_token=admin_token,
              process=proc, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{hub.api}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterHub did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)  # polling the Hub's port until it answers
        yield hub
    finally:
        stop_tree(proc)


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the Hub's process group, SIGKILL after 15 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)
        except ProcessLookupError:
            pass
