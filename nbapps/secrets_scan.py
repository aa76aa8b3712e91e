"""Find credentials saved in a notebook's sources and stored outputs, with detect-secrets.

Uses detect-secrets' ad-hoc line scanner (``detect_secrets.core.scan.scan_line``) inside
``transient_settings``, so nothing is written to disk and the global settings are restored.
Those settings are process-global and not thread-safe (one thread's exit restores them under
another's scan: ``KeyError: 'AWSKeyDetector'``, seen when ``make demo`` validated apps in
threads), so scans in one process take turns (:data:`_SETTINGS_LOCK`).

To keep false positives low on analysis notebooks, the generic entropy detectors
(``Base64HighEntropyString``, ``HexHighEntropyString``) and ``IPPublicDetector`` are left out:
hashes, ids, base64 blobs and IP addresses are everyday data, and in ad-hoc mode the entropy
detectors flag even ``df.head()``. Every vendor-specific detector (AWS, GitHub, Slack, Stripe,
private keys, JWTs, URLs with passwords, ...) and the ``password = "..."`` keyword detector stay.

A finding names the secret's type and where it is, never the secret. Lines ending with
``pragma: allowlist secret`` (detect-secrets' own marker) are skipped.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nbapps.secrets")

#: detect-secrets plugins not used, see the module docstring.
EXCLUDED_PLUGINS = frozenset({"Base64HighEntropyString", "HexHighEntropyString",
                              "IPPublicDetector"})
#: Lines longer than this are scanned in overlapping pieces (regex cost grows with length).
PIECE = 4096
_OVERLAP = 256
#: held while detect-secrets' global settings are ours (see the module docstring)
_SETTINGS_LOCK = threading.Lock()
_ALLOW = "pragma: allowlist secret"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BARE_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*\s*/?>")
_LETTER = re.compile(r"[A-Za-z]")
#: output mime types whose text is scanned (images and widget state are not text)
TEXT_MIME = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json",
             "application/javascript")


@dataclass(frozen=True)
class SecretHit:
    """A secret found: the cell, the kind (detect-secrets' type name) and where in the cell."""

    cell: int
    kind: str
    where: str            # "line 3" or "output 2 (stream stdout)"
    in_output: bool


def _plugins() -> list[dict[str, str]]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    names = sorted(cls.__name__ for cls in get_mapping_from_secret_type_to_class().values())
    return [{"name": n} for n in names if n not in EXCLUDED_PLUGINS]


def _worth_scanning(line: str) -> bool:
    """Cheap pre-filter: every detector needs letters, and a line of bare HTML tags around
    numbers (a pandas table) holds none outside the tags."""
    if len(line) < 8 or not _LETTER.search(line):
        return False
    return bool(_LETTER.search(_BARE_TAG.sub("", line)))


def _pieces(line: str) -> Iterator[str]:
    if len(line) <= PIECE:
        yield line
        return
    for start in range(0, len(line), PIECE - _OVERLAP):
        yield line[start:start + PIECE]


class _Scanner:
    """Scans one line at a time, remembering results per piece (outputs repeat themselves)."""

    def __init__(self, scan_line: Any) -> None:
        self._scan_line = scan_line
        self._cache: dict[str, tuple[str, ...]] = {}

    def kinds(self, line: str) -> tuple[str, ...]:
        line = line.rstrip()
        if _ALLOW in line or not _worth_scanning(line):
            return ()
        found: list[str] = []
        for piece in _pieces(line):
            kinds = self._cache.get(piece)
            if kinds is None:
                kinds = tuple(dict.fromkeys(secret.type for secret in self._scan_line(piece)))
                self._cache[piece] = kinds
            found.extend(k for k in kinds if k not in found)
        return tuple(found)


def _source_text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def output_texts(output: Any) -> Iterator[tuple[str, str]]:
    """``(label, text)`` for each text part of a stored output (stream, data, error)."""
    kind = output.get("output_type")
    if kind == "stream":
        yield f"stream {output.get('name', '')}".strip(), _source_text(output.get("text"))
    elif kind in ("execute_result", "display_data"):
        data = output.get("data") or {}
        for mime in TEXT_MIME:
            if mime in data:
                value = data[mime]
                text = value if isinstance(value, str) else _source_text(value)
                if mime == "application/json" and not isinstance(value, (str, list)):
                    text = json.dumps(value, indent=1, default=str)
                yield mime, text
    elif kind == "error":
        parts = [str(output.get("ename", "")), str(output.get("evalue", ""))]
        parts += [str(t) for t in output.get("traceback") or []]
        yield "error", _ANSI.sub("", "\n".join(parts))


def scan_notebook(nb: Any, *, per_output: int | None = None) -> list[SecretHit]:
    """Secrets in the sources and stored outputs (only the first ``per_output`` characters of
    each output's text when given)."""
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    hits: list[SecretHit] = []
    with _SETTINGS_LOCK, transient_settings({"plugins_used": _plugins()}):
        scanner = _Scanner(scan_line)
        for index, cell in enumerate(nb.cells):
            for number, line in enumerate(_source_text(cell.get("source")).splitlines(), 1):
                for kind in scanner.kinds(line):
                    hits.append(SecretHit(index, kind, f"line {number}", False))
            for out_no, output in enumerate(cell.get("outputs") or [], 1):
                for label, text in output_texts(output):
                    if per_output is not None and len(text) > per_output:
                        log.debug("secret scan of cell %d output %d cut at %d characters",
                                  index, out_no, per_output)
                        text = text[:per_output]
                    seen: set[str] = set()
                    for line in text.splitlines():
                        for kind in scanner.kinds(line):
                            if kind not in seen:
                                seen.add(kind)
                                hits.append(SecretHit(index, kind, f"output {out_no} ({label})",
                                                      True))
    return hits
