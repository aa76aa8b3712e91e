"""Voilà's page configuration computed once per runner (issue 12's rush).

For every page, Voilà's ``get_page_config`` lists the JupyterLab extensions on disk (reading each
one's ``package.json``) and filters them: 4 % of a runner's Voilà CPU in a rush of new viewers
(py-spy). A runner serves one app version with a fixed environment, so the answer is the same for
every page; each page gets its own deep copy, as a hook may change it.

Runs in the runner's Voilà process (from its generated ``voila.py``).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()


def remembering(compute: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``compute`` (Voilà's ``get_page_config``) remembered per base URL, settings and
    configuration objects (one of each in a runner)."""
    answers: dict[tuple[str, int, int], tuple[Any, Any, dict[str, Any]]] = {}

    def get_page_config(base_url: str, settings: dict[str, Any], log: Any,
                        voila_configuration: Any) -> dict[str, Any]:
        key = (base_url, id(settings), id(voila_configuration))
        with _lock:
            known = answers.get(key)
        # the objects are kept with the answer, so their ids cannot be reused by others
        if known is None or known[0] is not settings or known[1] is not voila_configuration:
            page_config = compute(base_url=base_url, settings=settings, log=log,
                                  voila_configuration=voila_configuration)
            with _lock:
                answers[key] = (settings, voila_configuration, copy.deepcopy(page_config))
            return page_config
        return copy.deepcopy(known[2])

    get_page_config.nbapps_remembering = True  # type: ignore[attr-defined]
    return get_page_config


def install() -> None:
    """Make Voilà's page handler and kernel pools use the remembered page configuration."""
    import voila.handler
    import voila.voila_kernel_manager

    for module in (voila.handler, voila.voila_kernel_manager):
        current = module.get_page_config
        if not getattr(current, "nbapps_remembering", False):
            module.get_page_config = remembering(current)  # type: ignore[attr-defined]


__all__ = ["install", "remembering"]
