"""``nbapps.record(name, value)``: values a notebook hands back to whoever ran it.

In a notebook::

    import nbapps
    nbapps.record("total", float(df["sales"].sum()))
    nbapps.record("by_region", {"EU": 10, "US": 12})

A run of the app (``POST /api/apps/<slug>/runs``, ``nbapps runs create``) returns the recorded
values as its ``result`` and as the ``result.json`` artifact. Like scrapbook's *glue*, a value is
written into the notebook itself: ``record`` displays one output of the MIME type
:data:`MIME` (``{"name": ..., "value": ...}``), which Jupyter front ends and the app do not show
(they have no renderer for it) and which :func:`read_records` finds again in the executed
notebook. Recording the same name again replaces the value (the last one in cell order wins).

Values must be JSON: ``None``, booleans, numbers (finite), strings, lists and mappings with
string keys; anything else raises ``TypeError`` in the cell (so the run fails with the cell
named), numpy scalars included: convert them (``float(x)``, ``x.tolist()``). Names are non-empty
strings of at most :data:`MAX_NAME` characters. Outside a kernel (plain Python) ``record`` only
checks its arguments and keeps the value in :data:`recorded`.
"""
from __future__ import annotations

import json
import math
from typing import Any

#: MIME type of a recorded value in a notebook output
MIME = "application/vnd.nbapps.record+json"
MAX_NAME = 100
#: values recorded in this process (outside a kernel, or for tests)
recorded: dict[str, Any] = {}


def _check(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}: JSON has no NaN or infinity")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a string")
            _check(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}, not a JSON "
                    "value: record numbers, strings, booleans, None, lists or dicts "
                    "(e.g. float(x), x.tolist())")


def record(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` as a result of this notebook's run (see the module)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise ValueError(f"a record name is a non-empty string of at most {MAX_NAME} "
                         f"characters, not {name!r}")
    _check(value, f"the value of {name!r}")
    plain = json.loads(json.dumps(value))
    recorded[name] = plain
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with every kernel
        return
    if get_ipython() is None:
        return
    display({MIME: {"name": name, "value": plain}}, raw=True)


def read_records(nb: Any) -> dict[str, Any]:
    """The values recorded in an executed notebook (``nbformat`` node or plain dict), in cell
    order; a later record of a name replaces an earlier one. Malformed outputs are skipped."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells") or []:
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs") or []:
            data = output.get("data") if isinstance(output, dict) else None
            item = data.get(MIME) if isinstance(data, dict) else None
            if isinstance(item, dict) and isinstance(item.get("name"), str) and "value" in item:
                out[item["name"]] = item["value"]
    return out


__all__ = ["MIME", "read_records", "record", "recorded"]
