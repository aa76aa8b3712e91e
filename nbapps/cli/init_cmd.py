"""``nbapps init NAME``: create ``DIR/NAME/NAME.ipynb``, a starter app that validates clean.

Refuses an invalid name (NBA100) and never overwrites an existing notebook (NBA106).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..scaffold import create_app


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="create a starter app notebook",
        description="Create DIR/NAME/NAME.ipynb: a small working app with a parameters cell, a "
                    "widget cell and its metadata filled in, ready to validate and publish. "
                    "Never overwrites an existing file.",
    )
    parser.add_argument("name", metavar="NAME",
                        help="app name: lowercase letters, digits and hyphens (e.g. sales-report)")
    parser.add_argument("--dir", default=None, metavar="DIR",
                        help="folder to create the app folder in (default: the current folder)")
    parser.add_argument("--title", default=None, metavar="T",
                        help="app title (default: from NAME, e.g. 'Sales report')")
    parser.set_defaults(handler=run)


def _shown(path: Path) -> str:
    """The path relative to the current folder when it is below it, else as given."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


def run(args: argparse.Namespace) -> int:
    created = create_app(args.name, args.dir, args.title)
    shown = _shown(created.path)
    print(f"Created {shown}  ({created.title})")
    print("Next steps:")
    print("  1. open it in JupyterLab and make it yours (its first cell lists the conventions)")
    print(f"  2. nbapps validate {shown}")
    print(f"  3. nbapps publish {shown}")
    return 0
