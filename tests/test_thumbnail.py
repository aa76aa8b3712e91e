"""Gallery thumbnails: a chart when the app has one, else a card made from what the app says."""
from __future__ import annotations

import base64
import io

from PIL import Image, ImageChops

from nbapps.thumbnail import MAX_SIZE, make_thumbnail
from tests.nbfactory import make_notebook


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _changed(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> bool:
    return ImageChops.difference(a.crop(box), b.crop(box)).getbbox() is not None


def test_text_only_app_gets_a_card_from_its_metadata():
    nb = make_notebook(meta={"title": "Inventory planner",
                             "description": "Reorder points for every item.",
                             "tags": ["operations", "inventory"]})
    data = make_thumbnail(nb, "Inventory planner")
    assert data == make_thumbnail(nb, "Inventory planner")  # deterministic bytes
    card = _image(data)
    assert card.size == MAX_SIZE
    width, height = MAX_SIZE
    bare = _image(make_thumbnail(nb, "Inventory planner", description="", tags=[]))
    # the description is written under the title, the tags along the bottom
    assert _changed(card, bare, (0, height // 3, width, height * 2 // 3))
    assert _changed(card, bare, (0, height * 3 // 4, width, height))
    other = _image(make_thumbnail(nb, "Sales dashboard"))
    assert _changed(card, other, (0, 0, width, height // 3))  # another title, another card


def test_a_chart_in_the_outputs_wins_over_the_card():
    red = Image.new("RGB", (300, 200), "red")
    buffer = io.BytesIO()
    red.save(buffer, format="PNG")
    nb = make_notebook()
    nb.cells[-1]["outputs"] = [{"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(buffer.getvalue())
                                         .decode()}}]
    thumb = _image(make_thumbnail(nb, "Test app"))
    assert thumb.size == (300, 200) and thumb.getpixel((150, 100)) == (255, 0, 0)


def test_a_chart_drawn_into_an_output_widget_is_found_in_the_widget_state():
    blue = Image.new("RGB", (120, 80), "blue")
    buffer = io.BytesIO()
    blue.save(buffer, format="PNG")
    nb = make_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "m1": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": base64.b64encode(buffer.getvalue()).decode()}}]}}}}}
    thumb = _image(make_thumbnail(nb, "Test app"))
    assert thumb.size == (120, 80) and thumb.getpixel((60, 40)) == (0, 0, 255)
