"""Gallery API tokens of the Jupyter user, kept by their Jupyter server, never sent back.

Why here and not in JupyterLab's settings: lab settings are stored as plain JSON and served in
full to the browser (``/lab/api/settings``), so a token there is readable by any page script and
shown in the JSON settings editor. The token is needed only by this server (it calls the
gallery), so the browser hands it over once (``POST /nbapps/settings``) and afterwards sees only
a masked prefix.

Storage: one JSON file, mode 0600 in a 0700 folder of the Jupyter data dir, written atomically
(temp file + ``os.replace``). Tokens are keyed by the normalised gallery URL, so a token is only
ever sent to the gallery it was given for.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError
from ..files import atomic_write_text

log = logging.getLogger("nbapps.labserver")

MAX_TOKEN_LENGTH = 512
_GALLERY_TOKEN_PREFIX = "nba_"
_DISPLAY_LEN = len(_GALLERY_TOKEN_PREFIX) + 8  # what the gallery's token list shows


def normalize_gallery_url(url: object) -> str:
    """``https://Host:8443/base/`` → ``https://host:8443/base``; refuses non-http(s) URLs."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError("no gallery URL given", code="NBA380")
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"not an http(s) URL: {url.strip()[:100]}", code="NBA380")
    if parts.username or parts.password:
        raise UsageError("put the API token in the token field, not in the URL", code="NBA380")
    netloc = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def mask_token(token: str) -> str:
    """The part of a token safe to show: the same prefix the gallery lists tokens by."""
    if token.startswith(_GALLERY_TOKEN_PREFIX) and len(token) > _DISPLAY_LEN + 8:
        return token[:_DISPLAY_LEN] + "…"
    return token[:4] + "…" if len(token) > 12 else "…"


def check_token(token: object) -> str:
    if not isinstance(token, str) or not token.strip():
        raise UsageError("the API token is empty", code="NBA381")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() or ord(c) < 32 for c in token):
        raise UsageError("that does not look like an API token (spaces or too long)",
                         code="NBA381")
    return token


class CredentialStore:
    """Tokens by gallery URL in one private JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("nbapps: %s was readable by others; restricting it to its owner",
                        self.path)
            os.chmod(self.path, 0o600)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("nbapps: cannot read %s; treating it as empty", self.path)
            return {}
        galleries = data.get("galleries") if isinstance(data, dict) else None
        return galleries if isinstance(galleries, dict) else {}

    def _write(self, galleries: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(self.path, json.dumps({"version": 1, "galleries": galleries},
                                                indent=1, sort_keys=True),
                          mode=0o600, fsync=True)

    def get(self, gallery_url: str) -> str | None:
        entry = self._read().get(normalize_gallery_url(gallery_url))
        token = entry.get("token") if isinstance(entry, dict) else None
        return token if isinstance(token, str) and token else None

    def set(self, gallery_url: str, token: str) -> None:
        galleries = self._read()
        galleries[normalize_gallery_url(gallery_url)] = {
            "token": check_token(token),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write(galleries)

    def delete(self, gallery_url: str) -> bool:
        galleries = self._read()
        if galleries.pop(normalize_gallery_url(gallery_url), None) is None:
            return False
        self._write(galleries)
        return True

    def status(self, gallery_url: str) -> dict[str, Any]:
        """``{"set": bool, "masked": "nba_Ab3dE9xQ…" | None}``: all the browser ever gets."""
        token = self.get(gallery_url)
        return {"set": token is not None, "masked": mask_token(token) if token else None}
