"""The Jupyter-server half of the nbapps JupyterLab extension.

It adds ``/nbapps/...`` endpoints to the user's own Jupyter server (validate, publish, list
submissions, store the gallery token); the TypeScript front-end in ``extension/`` calls them.
Enabled by ``jupyter-config/jupyter_server_config.d/nbapps.json``, which names this module.
"""
from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import NbappsLabApp

    return [{"module": "nbapps.labserver", "app": NbappsLabApp}]
