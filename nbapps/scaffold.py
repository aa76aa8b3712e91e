"""The starter notebook of ``nbapps init``, built in code with nbformat's v4 builders.

The template is a small working app that follows every authoring convention (see
"Notebook conventions" in the design notes): its first cell is a short README of those
conventions for the author, then the app's own introduction, an untagged setup cell, the one
``parameters`` cell and a ``widget`` cell with a slider redrawing an output. It validates
without errors as created, so an analyst starts from green and changes one thing at a time;
its starter description, introduction and ``draft`` tag are warnings (NBA035) until replaced,
so an untouched template is never published without a word.
"""
from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .errors import UsageError
from .slugs import MAX_SLUG, is_slug, slugify

log = logging.getLogger("nbapps.scaffold")


FALLBACK_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"}

#: the starter text's sentences that ask to be replaced (validation warns while they are left:
#: NBA035), and the tag the template starts with
REPLACE_DESCRIPTION = "replace this sentence with what the app does."
REPLACE_INTRO = "Replace this text with what your app does and who it is for."
PLACEHOLDER_PHRASES = (REPLACE_DESCRIPTION.rstrip("."), REPLACE_INTRO.rstrip("."))
DRAFT_TAG = "draft"

README = """\
# How this notebook becomes an app

*This cell is for you, the author; it has no `widget` tag, so the app does not show it.*

- **Parameters**: the cell tagged `parameters` holds the app's inputs, one plain
  `name = value  # help text` line each (numbers, text, `True`/`False`). Viewers can set them in
  the gallery or the URL; narrow the allowed values in `metadata.nbapps.parameters`
  (`choices`, `min`, `max`). Keep computations out of that cell.
- **What the app shows**: only cells tagged `widget` (charts, tables, widgets and markdown).
  Every cell still runs, top to bottom. Each `widget` cell must display something.
- **Metadata** (notebook metadata, key `nbapps`): `title`, `description`,
  `tags`, `files` (data files the app reads, relative to this notebook), `test_parameters`
  (parameter sets that are also run before publishing) and `timeout` (seconds per cell).
- Put imports and data loading above the parameters cell: they do not depend on the
  parameters, so a warm app runner can run them before a viewer arrives.
- Tags and metadata are edited in JupyterLab's right sidebar (Property Inspector).
- No secrets in the notebook and no `!shell` commands; ship the data the app reads (`files`)
  instead of downloading it.

Check it, then publish it for review (from this notebook's folder):

    nbapps validate {path}
    nbapps publish {path}
"""

SETUP = """\
import ipywidgets as widgets
from IPython.display import HTML, display"""

PARAMETERS = """\
years = 10  # how many years to show
rate_pct = 5.0  # yearly growth, in %"""

WIDGET = """\
years_w = widgets.IntSlider(value=years, min=1, max=50, description="Years")
out = widgets.Output()


def render(change=None):
    with out:
        out.clear_output(wait=True)
        rows = "".join(
            f"<tr><td>{year}</td><td style='text-align:right'>"
            f"{100 * (1 + rate_pct / 100) ** year:,.2f}</td></tr>"
            for year in range(years_w.value + 1)
        )
        display(HTML(f"<table><tr><th>year</th><th>value of 100</th></tr>{rows}</table>"))


years_w.observe(render, names="value")
render()
widgets.VBox([years_w, out])"""


@dataclass(frozen=True)
class Created:
    """What ``init`` made: the notebook's path and its app title."""

    path: Path
    title: str


def check_name(name: str) -> str:
    """``name`` if it is a valid app name, else UsageError NBA100 saying what a name may be."""
    # app names follow the gallery's slug rule, so the folder, the notebook and the app's URL
    # can share one name
    if not is_slug(name):
        suggestion = slugify(str(name))
        hint = f" (e.g. {suggestion})" if suggestion != name else ""
        raise UsageError(
            f"invalid app name {name!r}: use lowercase letters, digits and single hyphens, "
            f"starting and ending with a letter or digit, at most {MAX_SLUG} characters{hint}",
            code="NBA100",
        )
    return name


def title_from_name(name: str) -> str:
    """``sales-report`` → ``Sales report``."""
    words = name.replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def python_kernelspec() -> dict[str, str]:
    """The installed ``python3`` kernel's name, display name and language (a standard
    fallback when jupyter_client cannot find it, so ``init`` works anywhere)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
    except (ImportError, NoSuchKernel, OSError, ValueError) as exc:
        log.debug("python3 kernelspec not found (%s); using the standard one", exc)
        return dict(FALLBACK_KERNELSPEC)
    return {"name": "python3", "display_name": spec.display_name or "Python 3",
            "language": spec.language or "python"}


def new_app_notebook(name: str, title: str | None = None, *,
                     kernelspec: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The starter notebook for app ``name`` (a valid slug), titled ``title`` or from the name."""
    check_name(name)
    title = (title or "").strip() or title_from_name(name)
    path = f"{name}.ipynb"
    intro = f"# {title}\n\nShows how 100 grows over the years at a yearly rate. {REPLACE_INTRO}"
    cells = [
        new_markdown_cell(README.format(path=path)),
        new_markdown_cell(intro, metadata={"tags": ["widget"]}),
        new_code_cell(SETUP),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(WIDGET, metadata={"tags": ["widget"]}),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = dict(kernelspec or python_kernelspec())
    nb.metadata["language_info"] = {"name": "python", "file_extension": ".py",
                                    "mimetype": "text/x-python"}
    nb.metadata["nbapps"] = {
        "title": title,
        "description": f"Shows how an amount grows at a yearly rate; {REPLACE_DESCRIPTION}",
        "tags": [DRAFT_TAG],
        "files": [],
        "parameters": {"years": {"min": 1, "max": 50},
                       "rate_pct": {"min": -20.0, "max": 50.0}},
        "test_parameters": [{"years": 30, "rate_pct": 2.5}],
        "timeout": 60,
    }
    nbformat.validate(nb)
    return nb


def write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, refusing (UsageError NBA106) if it exists.

    The content goes to a temporary file in the same folder first; a hard link then creates
    ``path`` only if nothing is there (no window in which another file could be replaced).
    Where hard links are not supported, an existence check plus ``os.replace`` is used.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # mode 0o666 minus the umask, like any new file (mkstemp would make it private)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise _exists(path) from None
        except OSError as exc:  # e.g. a file system without hard links
            log.debug("hard link failed (%s); falling back to a checked replace", exc)
            if path.exists() or path.is_symlink():
                raise _exists(path) from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _exists(path: Path) -> UsageError:
    return UsageError(f"{path} already exists; not overwriting it", code="NBA106")


def create_app(name: str, directory: str | Path | None = None, title: str | None = None,
               **kwargs: Any) -> Created:
    """Create ``DIRECTORY/NAME/NAME.ipynb`` (``directory`` defaults to the current folder)."""
    check_name(name)
    base = Path(directory) if directory is not None else Path()
    folder = base / name
    path = folder / f"{name}.ipynb"
    if path.exists() or path.is_symlink():
        raise _exists(path)
    for part in (base, folder):
        if part.exists() and not part.is_dir():
            raise UsageError(f"{part} exists and is not a folder", code="NBA100")
    nb = new_app_notebook(name, title, **kwargs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create folder {folder}: {exc.strerror or exc}",
                         code="NBA100") from None
    write_new(path, nbformat.writes(nb) + "\n")
    log.debug("created %s", path)
    return Created(path=path, title=nb.metadata["nbapps"]["title"])
