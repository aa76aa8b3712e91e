"""App runners: standalone Voilà processes serving approved app versions, and their supervisor.

The gallery creates one :class:`Supervisor` (its ``runtime``), awaits :meth:`Supervisor.start`
at startup and :meth:`Supervisor.close` at shutdown, and mounts
:func:`nbapps.server.proxy.proxy_routes`.

The names below are imported on first use (PEP 562): the runner's launcher and kernel template
(:mod:`.launch`, :mod:`.forkserver`) live in this package and must start without importing the
supervisor's dependencies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import RunnerSettings
    from .process import AppInfo, AppRelease, Runner, RunnerError
    from .settings import RuntimeConfiguration
    from .source import AppSource
    from .supervisor import Route, RouteKind, Supervisor, SupervisorSettings

_WHERE = {
    "RunnerSettings": "config", "AppInfo": "process", "AppRelease": "process", "Runner": "process",
    "RunnerError": "process", "Route": "supervisor", "RouteKind": "supervisor",
    "Supervisor": "supervisor", "SupervisorSettings": "supervisor",
    "RuntimeConfiguration": "settings", "AppSource": "source",
}

__all__ = [
    "AppInfo", "AppRelease", "AppSource", "Route", "RouteKind", "Runner", "RunnerError",
    "RunnerSettings", "RuntimeConfiguration", "Supervisor", "SupervisorSettings",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
