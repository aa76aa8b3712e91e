"""The one rule for app slugs (URL names): lowercase ASCII letters and digits in groups joined by
single hyphens, at most 80 characters. Light on purpose: the CLI, bundles and the lab extension
use it without importing the database layer."""
from __future__ import annotations

import re
import unicodedata

SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_SLUG = 80


def slugify(text: str) -> str:
    """A slug from a title (``"Ventes 2024 — Région"`` → ``ventes-2024-region``); ``app`` if
    nothing of it is left."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "app"


def is_slug(text: object) -> bool:
    return isinstance(text, str) and len(text) <= MAX_SLUG and SLUG_RE.fullmatch(text) is not None
