"""The gallery thumbnail of an app: a PNG of at most 640×400 pixels.

Taken from, in order: the author's ``metadata.nbapps.thumbnail`` file, the first ``image/png``
output of the executed notebook (``widget`` cells first, as they make up the app), or a generated
placeholder showing the title. Works offline (Pillow's built-in font), and the same input always
gives the same bytes (no timestamps in the PNG).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

log = logging.getLogger("nbapps.thumbnail")

MAX_SIZE = (640, 400)
WIDGET_TAG = "widget"


def make_thumbnail(nb: Any, title: str, *, source: Path | None = None,
                   size: tuple[int, int] = MAX_SIZE) -> bytes:
    """PNG bytes of the app's thumbnail (see the module docstring for the order of sources)."""
    candidates: list[bytes] = []
    if source is not None:
        try:
            candidates.append(source.read_bytes())
        except OSError as exc:
            log.warning("thumbnail %s cannot be read (%s); using the notebook's output", source,
                        exc)
    for data in candidates + list(_png_outputs(nb)):
        image = _open(data)
        if image is not None:
            return _png(_fit(image, size))
    return _png(placeholder(title, size))


def _png_outputs(nb: Any) -> Iterator[bytes]:
    cells = list(getattr(nb, "cells", []) or [])
    ordered = ([c for c in cells if WIDGET_TAG in c.get("metadata", {}).get("tags", [])]
               + [c for c in cells if WIDGET_TAG not in c.get("metadata", {}).get("tags", [])])
    for cell in ordered:
        for out in cell.get("outputs", []) or []:
            data = (out.get("data") or {}).get("image/png")
            if isinstance(data, list):
                data = "".join(data)
            if isinstance(data, str):
                try:
                    yield base64.b64decode(data, validate=False)
                except (binascii.Error, ValueError):
                    continue


def _open(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("image skipped for the thumbnail: %s", exc)
        return None
    return image


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    image = image.convert("RGBA") if image.mode in ("P", "LA", "RGBA") else image.convert("RGB")
    if image.mode == "RGBA":  # flatten on white: galleries show thumbnails on light cards
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        image = background
    image.thumbnail(size, Image.Resampling.LANCZOS)
    return image


def placeholder(title: str, size: tuple[int, int] = MAX_SIZE) -> Image.Image:
    """A card with the title on a colour derived from it (so apps are told apart at a glance)."""
    digest = hashlib.sha256(title.encode("utf-8")).digest()
    hue = digest[0] / 255
    background = _hsv(hue, 0.35, 0.92)
    accent = _hsv(hue, 0.6, 0.55)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle([0, height - height // 12, width, height], fill=accent)
    font = _font(max(18, height // 11))
    lines = textwrap.wrap(title.strip() or "Untitled app", width=22)[:4]
    line_height = int(font.size * 1.25) if hasattr(font, "size") else 24
    y = (height - line_height * len(lines)) // 2
    for line in lines:
        left, _top, right, _bottom = draw.textbbox((0, 0), line, font=font)
        draw.text(((width - (right - left)) // 2, y), line, fill=(30, 30, 30), font=font)
        y += line_height
    return image


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # FreeType-rendered built-in font
    except TypeError:  # pragma: no cover - Pillow without FreeType: small bitmap font
        return ImageFont.load_default()


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
