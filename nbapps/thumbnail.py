"""The gallery thumbnail of an app: a PNG of at most 640×400 pixels.

Taken from, in order: the author's ``metadata.nbapps.thumbnail`` file, the first ``image/png``
output of the executed notebook (``widget`` cells first, as they make up the app), or a generated
card (:func:`card`) showing the title, the description and the tags, so an app without a chart
still has a card that says what it is. Works offline (Pillow's built-in font), and the same input
always gives the same bytes (no timestamps in the PNG).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

log = logging.getLogger("nbapps.thumbnail")

MAX_SIZE = (640, 400)
WIDGET_TAG = "widget"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def make_thumbnail(nb: Any, title: str, *, source: Path | None = None,
                   size: tuple[int, int] = MAX_SIZE, description: str | None = None,
                   tags: Sequence[str] | None = None) -> bytes:
    """PNG bytes of the app's thumbnail (see the module docstring for the order of sources).

    ``description`` and ``tags`` (for the generated card) default to the notebook's
    ``metadata.nbapps``."""
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
    meta = _app_meta(nb)
    if description is None:
        description = meta.get("description") if isinstance(meta.get("description"), str) else ""
    if tags is None:
        raw = meta.get("tags")
        tags = [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
    return _png(card(title, description or "", tags, size))


def _app_meta(nb: Any) -> dict[str, Any]:
    metadata = getattr(nb, "metadata", None) or (nb.get("metadata") if isinstance(nb, dict)
                                                 else None) or {}
    meta = metadata.get("nbapps") if hasattr(metadata, "get") else None
    return meta if isinstance(meta, dict) else {}


def _png_outputs(nb: Any) -> Iterator[bytes]:
    """PNG outputs: ``widget`` cells first, then the other cells, then the outputs kept in
    the saved widget state (charts an app draws into an ``ipywidgets.Output``)."""
    cells = list(getattr(nb, "cells", []) or [])
    ordered = ([c for c in cells if WIDGET_TAG in c.get("metadata", {}).get("tags", [])]
               + [c for c in cells if WIDGET_TAG not in c.get("metadata", {}).get("tags", [])])
    outputs = [out for cell in ordered for out in cell.get("outputs", []) or []]
    outputs += _widget_state_outputs(nb)
    for out in outputs:
        data = (out.get("data") or {}).get("image/png") if isinstance(out, dict) else None
        if isinstance(data, list):
            data = "".join(data)
        if isinstance(data, str):
            try:
                yield base64.b64decode(data, validate=False)
            except (binascii.Error, ValueError):
                continue


def _widget_state_outputs(nb: Any) -> list[Any]:
    metadata = getattr(nb, "metadata", None) or {}
    widgets = metadata.get("widgets") if hasattr(metadata, "get") else None
    state = (widgets or {}).get(WIDGET_STATE_MIME, {}).get("state", {}) \
        if isinstance(widgets, dict) else {}
    found: list[Any] = []
    for model in state.values() if isinstance(state, dict) else []:
        outputs = ((model or {}).get("state") or {}).get("outputs") \
            if isinstance(model, dict) else None
        if isinstance(outputs, list):
            found.extend(outputs)
    return found


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


def card(title: str, description: str = "", tags: Sequence[str] = (),
         size: tuple[int, int] = MAX_SIZE) -> Image.Image:
    """A card for an app without a picture: title, description and tags on a colour derived
    from the title (so apps are told apart at a glance), laid out like the gallery's cards."""
    digest = hashlib.sha256(title.encode("utf-8")).digest()
    hue = digest[0] / 255
    width, height = size
    image = Image.new("RGB", size, _hsv(hue, 0.12, 0.98))
    draw = ImageDraw.Draw(image)
    band = max(6, height // 40)
    draw.rectangle([0, 0, width, band], fill=_hsv(hue, 0.55, 0.62))
    pad = max(16, width // 16)
    y = band + pad
    text_width = width - 2 * pad
    title_font = _font(max(16, height // 9))
    for line in _wrap(draw, title.strip() or "Untitled app", title_font, text_width, 2):
        draw.text((pad, y), line, fill=_hsv(hue, 0.7, 0.28), font=title_font)
        y += _line_height(title_font)
    y += pad // 3
    body_font = _font(max(12, height // 17))
    body_line = _line_height(body_font)
    room = max(0, (height - band - pad - y - body_line * 2) // body_line)
    for line in _wrap(draw, " ".join(description.split()), body_font, text_width, min(4, room)):
        draw.text((pad, y), line, fill=(70, 74, 82), font=body_font)
        y += _line_height(body_font)
    tag_font = _font(max(11, height // 22))
    x, chip_y = pad, height - pad - _line_height(tag_font)
    for tag in list(tags)[:6]:
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=tag_font)
        chip_w, chip_h = right - left + tag_font.size, _line_height(tag_font)
        if x + chip_w > width - pad:
            break
        draw.rounded_rectangle([x, chip_y, x + chip_w, chip_y + chip_h], radius=chip_h // 2,
                               fill=(255, 255, 255), outline=_hsv(hue, 0.35, 0.75))
        draw.text((x + tag_font.size // 2, chip_y + (chip_h - (bottom - top)) // 2 - top), tag,
                  fill=_hsv(hue, 0.6, 0.35), font=tag_font)
        x += chip_w + tag_font.size // 2
    return image


def placeholder(title: str, size: tuple[int, int] = MAX_SIZE) -> Image.Image:
    """The card with the title only (kept for callers that know nothing else)."""
    return card(title, size=size)


def _line_height(font: Any) -> int:
    return int(getattr(font, "size", 16) * 1.3)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int,
          max_lines: int) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels, at most ``max_lines`` (the
    last one ends with "…" when text was left out)."""
    if max_lines <= 0 or not text:
        return []
    lines: list[str] = []
    current = ""
    words = text.split()
    for i, word in enumerate(words):
        attempt = f"{current} {word}".strip()
        if draw.textlength(attempt, font=font) <= width or not current:
            current = attempt
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines:
            current = ""
            rest = " ".join(words[i:])
            lines[-1] = _ellipsis(draw, f"{lines[-1]} {rest}", font, width)
            break
    if current:
        lines.append(current)
    return [_ellipsis(draw, line, font, width) for line in lines[:max_lines]]


def _ellipsis(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"


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
