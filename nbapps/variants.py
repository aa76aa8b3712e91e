"""Variants: named parameter sets an analyst curates next to the app's free-form parameters.

A notebook lists them in its metadata::

    "nbapps": {"variants": [{"name": "EU 2024", "parameters": {"region": "EU", "year": 2024}}]}

* ``name``: shown on the app page, 1-80 characters, unique; its **key** (``eu-2024``, the
  :func:`nbapps.slugs.slugify` of the name) names the variant in URLs (``?variant=eu-2024``) and
  must be unique too;
* ``parameters``: values checked against the parameter contract like ``test_parameters``
  (unknown name NBA091, wrong type or outside ``choices``/``min``/``max`` NBA092); parameters
  left out keep their defaults;
* at most :data:`MAX_VARIANTS` (NBA094); a malformed list or entry is NBA090, a repeated name or
  key NBA093.

``nbapps validate``, publish and the gallery's own check report the findings (a rule in
:mod:`nbapps.validation.rules`). The app page links each variant of the live version to the app
opened with the variant's values as URL query values (:func:`query_values`: the texts the
parameter bar sends, read back by :meth:`~nbapps.contract.ParameterContract.coerce`); an app
with ``snapshot: true`` also gets one snapshot per variant.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .findings import Finding
from .metadata_lists import capped_mappings
from .slugs import slugify

log = logging.getLogger("nbapps.variants")

#: most variants a notebook may declare
MAX_VARIANTS = 20
MAX_NAME = 80
_PARAM_CODES = {"NBA101": "NBA091", "NBA102": "NBA092", "NBA103": "NBA092"}


@dataclass(frozen=True)
class Variant:
    """One valid variant: its display ``name``, URL ``key`` and checked parameter values."""

    name: str
    key: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "parameters": dict(self.parameters)}


def variant_key(name: str) -> str:
    """The URL key of a variant name (``"EU 2024"`` → ``eu-2024``)."""
    return slugify(name)


def parse_variants(raw: Any, contract: Any = None) -> tuple[list[Variant], list[Finding]]:
    """The valid variants of ``metadata.nbapps.variants`` and the findings about the rest.

    ``contract`` (a :class:`~nbapps.contract.ParameterContract`; None skips the parameter
    check, e.g. when the parameters cell is unusable and NBA022 already says so).
    """
    variants: list[Variant] = []
    entries, findings = capped_mappings(raw, field="variants", code="NBA090",
                                        too_many_code="NBA094", limit=MAX_VARIANTS,
                                        shape="`name` and `parameters`")
    names: dict[str, str] = {}
    for index, item in entries:
        where = f"variants[{index}]"
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
            findings.append(Finding("NBA090", f"{where}: `name` must be a non-empty string of at "
                                    f"most {MAX_NAME} characters"))
            continue
        name = " ".join(name.split())
        where = f"variant {name!r}"
        unknown = sorted(set(item) - {"name", "parameters"})
        if unknown:
            findings.append(Finding("NBA090", f"{where}: unknown field(s) "
                                    f"{', '.join(map(repr, unknown))} (a variant has `name` and "
                                    "`parameters`)"))
            continue
        parameters = item.get("parameters", {})
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            findings.append(Finding("NBA090", f"{where}: `parameters` must be a mapping of "
                                    "parameter name to value"))
            continue
        key = variant_key(name)
        if key in names:
            same = "name" if names[key] == name else f"link key {key!r} as {names[key]!r}"
            findings.append(Finding("NBA093", f"{where}: has the same {same}; variant names "
                                    "must be unique"))
            continue
        names[key] = name
        values = dict(parameters)
        if contract is not None:
            problems = contract.problems(values)
            if problems:
                findings += [Finding(_PARAM_CODES.get(code, "NBA092"), f"{where}: {message}")
                             for code, message in problems]
                continue
            values = contract.check(values)
        variants.append(Variant(name=name, key=key, parameters=values))
    return variants, findings


def query_values(variant: Variant, contract: Any = None) -> dict[str, str]:
    """The variant's values as URL query texts, read back to the same values by
    :meth:`~nbapps.contract.ParameterContract.coerce` (what the app's parameter bar submits):
    a value of a ``str`` parameter as it is, anything else as JSON (``true``, ``3.5``,
    ``["a", "b"]``, ``"text"`` for a parameter whose default is None), in the contract's
    order (stable URLs whatever order the metadata was saved in)."""
    out: dict[str, str] = {}
    order = {n: i for i, n in enumerate(contract.names())} if contract is not None else {}
    for name, value in sorted(variant.parameters.items(),
                              key=lambda kv: order.get(kv[0], len(order))):
        param = contract.get(name) if contract is not None else None
        plain = isinstance(value, str) and (param is None or param.type == "str")
        out[name] = value if plain else json.dumps(value, ensure_ascii=False)
    return out


def snapshot_parameter_sets(manifest: Any) -> list[dict[str, Any]]:
    """The parameter sets a live version with ``snapshot: true`` gets snapshots of (in its
    gallery-derived manifest): the defaults (``{}``), then each valid variant's values (a
    variant equal to another set is not repeated); empty when the version did not opt in."""
    from .contract import ParameterContract

    if not isinstance(manifest, dict) or manifest.get("snapshot") is not True \
            or manifest.get("legacy"):
        return []
    contract = ParameterContract.from_dict(manifest.get("parameters") or [])
    sets: list[dict[str, Any]] = [{}]
    seen = {"{}"}
    for variant in parse_variants(manifest.get("variants") or None, contract)[0]:
        key = json.dumps(variant.parameters, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            sets.append(dict(variant.parameters))
    return sets


def queue_snapshot_runs(catalog: Any, slug: str, version_id: int, manifest: Any) -> list[Any]:
    """Queue the snapshot runs of a version that just went live (approval, rollback) with
    ``catalog.queue_runs`` (:mod:`nbapps.catalog.runs`, origin ``snapshot``, background
    priority). Never raises: a version goes live whether its snapshots could be queued or not
    (without one the app opens live, as before); the reason is logged."""
    sets = snapshot_parameter_sets(manifest)
    queue = getattr(catalog, "queue_runs", None)
    if not sets or queue is None:
        return []
    try:
        from .catalog.runs import PRIORITY_SNAPSHOT

        return list(queue(slug, sets, user=None, version_id=version_id, origin="snapshot",
                          priority=PRIORITY_SNAPSHOT))
    except Exception:  # noqa: BLE001 - going live must not fail for a snapshot
        log.warning("app %s: snapshot runs of version %s not queued", slug, version_id,
                    exc_info=True)
        return []


def find_variant(variants: list[Variant], key: str | None) -> Variant | None:
    if not key:
        return None
    return next((v for v in variants if v.key == key), None)


__all__ = ["MAX_VARIANTS", "Variant", "find_variant", "parse_variants", "query_values",
           "queue_snapshot_runs", "snapshot_parameter_sets", "variant_key"]
