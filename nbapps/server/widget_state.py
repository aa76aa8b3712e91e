"""The widget state a run saved, made safe and renderable for the review preview.

The preview frame renders saved widget state with the ipywidgets HTML manager (no kernel): the
state is what the gallery's run left in ``metadata.widgets``. Before it reaches the browser:

* only models of the built-in widget libraries (``@jupyter-widgets/base|controls|output``) are
  kept, and only those whose every referenced model (``IPY_MODEL_<id>`` anywhere in the state)
  is kept too: the HTML manager refuses the whole state when one model's class cannot be
  loaded, and a custom library has no renderer here. A view of anything else becomes a
  placeholder naming the library;
* HTML that a widget would insert (``HTML``/``HTMLMath`` values, descriptions with
  ``description_allow_html``, outputs captured by ``Output`` widgets) goes through the same
  sanitizer as the notebook's own outputs, and captured outputs keep only inert types.

The frame's CSP forbids every script but our static bundle anyway; this keeps the saved state
from relying on that alone.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
#: the libraries whose views the HTML manager bundle renders by itself
BUILTIN_MODULES = frozenset({
    "@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output",
})
#: what an ``Output`` widget's captured display data may keep (``text/html`` is sanitized)
CAPTURED_MIMES = frozenset({
    "text/plain", "text/html", "text/latex", "image/png", "image/jpeg", "image/gif",
    WIDGET_VIEW_MIME,
})
_REF = "IPY_MODEL_"
_MODEL_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


@dataclass(frozen=True)
class WidgetSet:
    """The renderable part of a saved widget state, and why the rest is not rendered."""

    #: ``{"version_major": 2, "version_minor": 0, "state": {...}}`` of the renderable models
    state: dict[str, Any]
    #: model id -> libraries that keep it from rendering (custom libraries; "missing" models)
    blocked: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, Any]:
        return dict(self.state.get("state") or {})

    def renderable(self, model_id: str) -> bool:
        return model_id in self.models

    def to_json(self) -> str:
        """The state as JSON safe inside a ``<script type="...json">`` element."""
        return script_json(self.state)


def script_json(value: Any) -> str:
    """JSON that cannot close or confuse the ``<script>`` element it is embedded in."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def saved_state(metadata: dict[str, Any]) -> dict[str, Any]:
    """model id -> model entry of a notebook's ``metadata.widgets`` (empty when none)."""
    widgets = metadata.get("widgets") if isinstance(metadata, dict) else None
    bundle = widgets.get(WIDGET_STATE_MIME) if isinstance(widgets, dict) else None
    models = bundle.get("state") if isinstance(bundle, dict) else None
    if not isinstance(models, dict):
        return {}
    return {k: v for k, v in models.items()
            if isinstance(k, str) and _MODEL_ID.fullmatch(k) and isinstance(v, dict)}


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith(_REF):
            yield value[len(_REF):]
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)


def _modules(model: dict[str, Any]) -> set[str]:
    state = model.get("state") if isinstance(model.get("state"), dict) else {}
    found = {model.get("model_module"), state.get("_model_module"), state.get("_view_module")}
    return {m if isinstance(m, str) else "?" for m in found if m is not None}


def select(models: dict[str, Any]) -> tuple[set[str], dict[str, tuple[str, ...]]]:
    """(renderable model ids, blocked model id -> reasons): see the module docstring."""
    blocked: dict[str, set[str]] = {}
    for model_id, model in models.items():
        foreign = _modules(model) - BUILTIN_MODULES
        if foreign:
            blocked[model_id] = foreign
    keep = set(models) - set(blocked)
    changed = True
    while changed:  # drop models that reference a dropped or missing one, to a fixpoint
        changed = False
        for model_id in sorted(keep):
            for ref in _refs(models[model_id].get("state")):
                if ref not in keep:
                    reasons = blocked.get(ref) if ref in models else None
                    blocked.setdefault(model_id, set()).update(reasons or {"missing"})
                    keep.discard(model_id)
                    changed = True
                    break
    return keep, {k: tuple(sorted(v)) for k, v in blocked.items()}


def _clean_output(out: Any, clean_html: Callable[[str], str]) -> dict[str, Any] | None:
    if not isinstance(out, dict):
        return None
    kind = out.get("output_type")
    if kind == "stream":
        return {"output_type": "stream", "name": str(out.get("name", "stdout")),
                "text": _text(out.get("text"))}
    if kind == "error":
        return {"output_type": "error", "ename": str(out.get("ename", "")),
                "evalue": str(out.get("evalue", "")),
                "traceback": [str(x) for x in out.get("traceback") or [] if isinstance(x, str)]}
    if kind in ("display_data", "execute_result"):
        data = out.get("data") if isinstance(out.get("data"), dict) else {}
        kept: dict[str, Any] = {}
        for mime, value in data.items():
            if mime not in CAPTURED_MIMES:
                continue
            if mime == "text/html":
                kept[mime] = clean_html(_text(value))
            elif mime == WIDGET_VIEW_MIME:
                view = widget_view(value)
                if view is not None:
                    kept[mime] = view
            else:
                kept[mime] = value if isinstance(value, (str, list)) else _text(value)
        if not kept:
            return None
        cleaned: dict[str, Any] = {"output_type": kind, "data": kept, "metadata": {}}
        if kind == "execute_result":
            cleaned["execution_count"] = None
        return cleaned
    return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)


def widget_view(value: Any) -> dict[str, Any] | None:
    """A widget-view output rebuilt from its model id only (None when it has no valid id)."""
    if not isinstance(value, dict):
        return None
    model_id = value.get("model_id")
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        return None
    return {"version_major": 2, "version_minor": 0, "model_id": model_id}


def _clean_model(model: dict[str, Any], clean_html: Callable[[str], str]) -> dict[str, Any]:
    model = json.loads(json.dumps(model))  # a private copy
    state = model.get("state")
    if not isinstance(state, dict):
        model["state"] = state = {}
    name = state.get("_model_name") or model.get("model_name")
    if name in ("HTMLModel", "HTMLMathModel") and "value" in state:
        state["value"] = clean_html(_text(state["value"]))
    if state.get("description_allow_html") and "description" in state:
        state["description"] = clean_html(_text(state["description"]))
    if name == "OutputModel":
        outputs = [_clean_output(o, clean_html) for o in state.get("outputs") or []]
        state["outputs"] = [o for o in outputs if o is not None]
    return model


def renderable_widgets(metadata: dict[str, Any], clean_html: Callable[[str], str]) -> WidgetSet:
    """The saved widget state of a notebook, reduced and sanitized for the preview."""
    models = saved_state(metadata)
    keep, blocked = select(models)
    state = {model_id: _clean_model(models[model_id], clean_html) for model_id in sorted(keep)}
    return WidgetSet({"version_major": 2, "version_minor": 0, "state": state}, blocked)


def model_label(models: dict[str, Any], model_id: str) -> str:
    """A short name for a widget (``IntSlider``) from its saved model, for text and diffs."""
    model = models.get(model_id) or {}
    state = model.get("state") if isinstance(model.get("state"), dict) else {}
    name = state.get("_model_name") or model.get("model_name") or "widget"
    name = str(name)
    return name[:-len("Model")] if name.endswith("Model") and len(name) > 5 else name


__all__ = [
    "BUILTIN_MODULES", "WIDGET_STATE_MIME", "WIDGET_VIEW_MIME", "WidgetSet", "model_label",
    "renderable_widgets", "saved_state", "script_json", "select", "widget_view",
]
