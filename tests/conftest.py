"""Shared fixtures. Fixtures that start servers pick free loopback ports and always stop them."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.nbfactory import make_notebook, write_notebook


@pytest.fixture
def app_notebook_path(tmp_path: Path) -> Path:
    """A valid app notebook written to a temporary folder."""
    return write_notebook(make_notebook(), tmp_path / "app" / "app.ipynb")
