"""App runners: standalone Voilà processes serving approved app versions, and their supervisor.

The gallery creates one :class:`Supervisor` (its ``runtime``), awaits :meth:`Supervisor.start`
at startup and :meth:`Supervisor.close` at shutdown, and mounts
:func:`nbapps.server.proxy.proxy_routes`.
"""
from __future__ import annotations

from .config import RunnerSettings
from .process import AppInfo, AppRelease, Runner, RunnerError
from .supervisor import Route, RouteKind, Supervisor, SupervisorSettings

__all__ = [
    "AppInfo", "AppRelease", "Route", "RouteKind", "Runner", "RunnerError", "RunnerSettings",
    "Supervisor", "SupervisorSettings",
]
