"""A real JupyterHub on loopback for tests (``python -m jupyterhub``).

By default the Hub runs without configurable-http-proxy: its proxy class is a no-op written
into the config, and tests talk to the Hub's own port. With ``proxy=`` (:func:`chp_command`)
it starts the real configurable-http-proxy in front, as deployments do. A service ``tester``
holds an admin token for the test's REST calls (``Hub.call``). Used by tests/test_hub_auth.py,
tests/test_hub_runner.py and tests/test_hub_proxy.py.
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


#: the configurable-http-proxy release the proxied tests install (npm, once per test run)
CHP_VERSION = "5.3.0"


def chp_command(folder: Path) -> list[str]:
    """configurable-http-proxy, installed with npm into ``folder`` (Node.js comes with the
    lab extension's build tools)."""
    binary = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                        f"configurable-http-proxy@{CHP_VERSION}"], check=True,
                       capture_output=True, timeout=300)
    return [str(binary)]


@contextmanager
def running_hub(folder: Path, port: int, config: str, *,
                services: list[dict[str, Any]] = (),  # type: ignore[assignment]
                roles: list[dict[str, Any]] = (),  # type: ignore[assignment]
                tester_scopes: list[str] = TESTER_SCOPES,
                proxy: tuple[list[str], int, int] | None = None) -> Iterator[Hub]:
    """A Hub on 127.0.0.1:``port`` with ``config`` (Python lines), the ``services`` and
    ``roles`` given plus the ``tester`` service; stopped (process group) on exit.

    ``proxy``: (configurable-http-proxy's command, its public port, its API port): the Hub
    starts that proxy and ``Hub.url`` is the proxy's (the Hub itself stays on ``port``)."""
    folder.mkdir(parents=True, exist_ok=True)
    admin_token = secrets.token_hex(32)
    hub_url = f"http://127.0.0.1:{port}"
    public_url = f"http://127.0.0.1:{proxy[1]}" if proxy else hub_url
    all_services = [*services, {"name": "tester", "api_token": admin_token}]
    all_roles = [*roles, {"name": "tester", "services": ["tester"], "scopes": tester_scopes}]
    proxy_config = NO_PROXY_CONFIG if proxy is None else textwrap.dedent(f"""
        c.ConfigurableHTTPProxy.command = {proxy[0]!r}
        c.ConfigurableHTTPProxy.api_url = {f"http://127.0.0.1:{proxy[2]}"!r}
        c.ConfigurableHTTPProxy.should_start = True
    """)
    text = proxy_config + textwrap.dedent(f"""
        c.JupyterHub.bind_url = {public_url!r}
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
    hub = Hub(url=f"{public_url}/hub/", api=f"{hub_url}/hub/api", admin_token=admin_token,
              process=proc, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:  # through the proxy when there is one: up once it routes to the Hub
                if httpx.get(f"{public_url}/hub/api/", timeout=2).status_code == 200:
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
