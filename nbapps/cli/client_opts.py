"""What the commands that talk to a gallery over its API share: the ``--gallery``/``--token``/
``--format`` options, the client they resolve to, and the JSON printer of ``--format json``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..client import ClientSettings, GalleryClient


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", metavar="URL",
                        help="gallery URL (default: $NBAPPS_GALLERY or the config file)")
    parser.add_argument("--token", help="API token (default: $NBAPPS_TOKEN or the config file; "
                        "prefer those: a token on the command line is visible to other users)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="output format (default: text)")


def client_from(args: argparse.Namespace) -> GalleryClient:
    """The gallery client of ``--gallery``/``--token``, else the environment or config file."""
    return GalleryClient.from_settings(ClientSettings.resolve(args.gallery, args.token))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
