"""Map the front-end's notebook paths (contents-API paths) to files under the server root."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from jupyter_core.paths import is_hidden

from ..errors import NotFound, UsageError


def resolve_notebook(root_dir: str, path: object, *, allow_hidden: bool = False) -> Path:
    """The file of notebook ``path`` (relative to ``root_dir``, ``/``-separated).

    Refuses what the Jupyter contents API would refuse: paths leaving the root, hidden files
    (unless ``allow_hidden``), and anything that is not an existing ``.ipynb`` file. A path that
    leaves the root is reported as not found, like a missing file.
    """
    if not isinstance(path, str) or not path.strip():
        raise UsageError("the notebook `path` is required", code="NBA100")
    if "\0" in path or "\\" in path:
        raise UsageError(f"invalid notebook path: {path!r}", code="NBA105")
    parts = PurePosixPath(path.strip().lstrip("/")).parts
    root = os.path.abspath(root_dir)
    full = os.path.abspath(os.path.join(root, *parts))
    missing = NotFound(f"notebook not found: {path}", code="NBA105")
    if ".." in parts or os.path.commonpath([root, full]) != root:
        raise missing
    if not full.endswith(".ipynb"):
        raise UsageError(f"not a notebook (.ipynb): {path}", code="NBA105")
    if not os.path.isfile(full):
        raise missing
    if not allow_hidden and is_hidden(full, root):
        raise missing
    return Path(full)


def fingerprint(path: Path) -> str:
    """SHA-256 of the file's bytes: two jobs on the same content may share one run."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
