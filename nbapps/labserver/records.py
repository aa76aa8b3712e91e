"""Which gallery app each notebook file was published as, from this server.

A notebook's app is the slug recorded in the notebook itself (``metadata.nbapps.slug``, see
:mod:`nbapps.labserver.gallery`); these records, per gallery and notebook file, are the fallback
for notebooks published before slugs were recorded. One small JSON file in the Jupyter data dir,
written atomically; only the server process writes it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..files import atomic_write_text

log = logging.getLogger("nbapps.labserver")

MAX_IDS = 50


class PublishRecords:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("nbapps: cannot read %s; starting afresh", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))

    def get(self, gallery: str, os_path: str) -> dict[str, Any] | None:
        entry = self._read().get(gallery, {}).get(os_path)
        return entry if isinstance(entry, dict) else None

    def add(self, gallery: str, os_path: str, submission: dict[str, Any]) -> None:
        data = self._read()
        entry = data.setdefault(gallery, {}).setdefault(os_path, {"app": None, "ids": []})
        if submission.get("app"):
            entry["app"] = submission["app"]
        ids = [i for i in entry.get("ids", []) if i != submission.get("id")]
        entry["ids"] = ([submission["id"]] + ids)[:MAX_IDS]
        self._write(data)
