"""Lists of named mappings in ``metadata.nbapps`` (``schedules``, ``variants``): the checks they
share before each entry's own (a list, at most ``limit`` entries, each a mapping)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .findings import Finding


def capped_mappings(raw: Any, *, field: str, code: str, too_many_code: str, limit: int,
                    shape: str) -> tuple[list[tuple[int, Mapping[str, Any]]], list[Finding]]:
    """``(index, entry)`` for the mappings among the first ``limit`` entries of
    ``metadata.nbapps.<field>``, and the findings about the rest: not a list, or an entry that
    is not a mapping (``code``), more than ``limit`` entries (``too_many_code``; the first
    ``limit`` are still checked). ``shape`` says what an entry holds (```name` and `cron```).
    None (the field is absent) is no list and no finding."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [Finding(code, f"`metadata.nbapps.{field}` must be a list of mappings with "
                                  f"{shape}")]
    findings: list[Finding] = []
    if len(raw) > limit:
        findings.append(Finding(too_many_code, f"`metadata.nbapps.{field}` declares {len(raw)} "
                                f"{field}; at most {limit} are allowed (the first {limit} are "
                                "checked)"))
    entries: list[tuple[int, Mapping[str, Any]]] = []
    for index, item in enumerate(raw[:limit]):
        if isinstance(item, Mapping):
            entries.append((index, item))
        else:
            findings.append(Finding(code, f"{field}[{index}] must be a mapping with {shape}"))
    return entries, findings
