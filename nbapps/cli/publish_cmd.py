"""``nbapps publish NOTEBOOK``: validate and bundle locally, then submit to a gallery.

The notebook goes through the same pipeline as ``nbapps bundle`` (validation, run, content-hashed
bundle) in a temporary folder; the packed archive is uploaded to ``POST /api/submissions``. The
server checks it again and answers with the submission's id and URL; publishing identical
content again returns the same submission.

The gallery and token come from ``--gallery``/``--token``, ``NBAPPS_GALLERY``/``NBAPPS_TOKEN`` or
``~/.config/nbapps/config.toml`` (keys ``gallery`` and ``token``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..client import ClientSettings, GalleryClient
from ..errors import UsageError
from .review_cmd import add_client_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "publish", help="validate, bundle and submit a notebook to a gallery",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("notebook", metavar="NOTEBOOK", help="the app notebook (.ipynb)")
    parser.add_argument("--slug", help="app slug in the gallery (default: from the title)")
    add_client_options(parser)
    parser.set_defaults(handler=run)


def build_archive(notebook: Path) -> tuple[bytes, Any]:
    """Validate + bundle ``notebook`` in a temp folder; return (archive bytes, BundleInfo)."""
    from ..bundle import build_bundle, pack_bundle

    with tempfile.TemporaryDirectory(prefix="nbapps-publish-") as tmp:
        info = build_bundle(notebook, Path(tmp) / "bundle")
        return pack_bundle(info.path), info


def publish(notebook: Path, client: GalleryClient, *, slug: str | None = None
            ) -> dict[str, Any]:
    archive, _ = build_archive(notebook)
    return client.submit(archive, slug=slug)


def run(args: argparse.Namespace) -> int:
    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise UsageError(f"{notebook}: no such notebook", code="NBA105")
    settings = ClientSettings.resolve(args.gallery, args.token)  # fail early, before running
    if args.format == "text":
        sys.stderr.write(f"validating and bundling {notebook} ...\n")
    archive, info = build_archive(notebook)
    with GalleryClient.from_settings(settings) as client:
        result = client.submit(archive, slug=args.slug)
    if args.format == "json":
        sys.stdout.write(json.dumps({"id": result["id"], "url": result["url"],
                                     "state": result["state"]}) + "\n")
    else:
        verb = "submitted" if result.get("created", True) else "already submitted (unchanged)"
        sys.stdout.write(f"{verb}: #{result['id']} {result.get('app', '')} "
                         f"v{result.get('number', '?')} [{result['state']}]\n{result['url']}\n")
    return 0
