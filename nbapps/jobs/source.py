"""A version's source and the manifest the gallery derives from it.

The trusted input of a submission is ``app.ipynb`` and the data files it declares
(:func:`nbapps.bundle.read_source_folder`). From those alone the gallery derives the version's
manifest (:func:`derive_manifest`): title, description, tags, author hint, declared thumbnail,
parameter contract, test parameter sets, timeout, kernel, the list of source files and where the
source is stored. A client's own manifest is never read for any of it; its validation summary may
be kept under ``client_claim`` (:func:`client_claim`), which nothing shows as a fact.

Versions stored by an earlier nbapps carry ``{"legacy": true, ...}`` instead (migration 0002):
their source is read out of the client archive (:meth:`nbapps.store.BundleStore.read_source`)
until their first check stores it as a source object and derives their manifest.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ..bundle import APP_NOTEBOOK
from ..errors import NbappsError
from ..store import BundleStore, StoredSource

log = logging.getLogger("nbapps.jobs")

#: ``schema`` of the manifests the gallery derives
SCHEMA = "nbapps.gallery/1"
#: client manifest keys kept as its claim (never shown as the truth), and their total size cap
CLAIM_KEYS = ("validation", "versions", "created", "sha256", "source_name")
MAX_CLAIM_BYTES = 64 * 1024


def is_derived(manifest: Any) -> bool:
    """Whether a version manifest is one the gallery derived (not a legacy client's)."""
    return isinstance(manifest, dict) and manifest.get("schema") == SCHEMA


def source_ref(version: Any) -> tuple[str, str | None]:
    """(content hash, store key) of a version's stored source: the source object the gallery
    recorded in its manifest, else the version's own hash and key (legacy archives, seeded
    versions)."""
    manifest = getattr(version, "manifest", None)
    source = manifest.get("source") if isinstance(manifest, dict) else None
    if isinstance(source, dict) and isinstance(source.get("sha256"), str) and \
            isinstance(source.get("key"), str) and BundleStore.is_source_key(source["key"]):
        return source["sha256"], source["key"]
    key = getattr(version, "store_key", None)
    return version.sha256, key if isinstance(key, str) and key else None


def client_claim(manifest: Any) -> dict[str, Any] | None:
    """The part of a client-written manifest kept as its claim, or None."""
    if not isinstance(manifest, dict):
        return None
    claim = {k: manifest[k] for k in CLAIM_KEYS if k in manifest}
    if not claim:
        return None
    try:
        if len(json.dumps(claim, default=str)) > MAX_CLAIM_BYTES:
            claim.pop("validation", None)
            claim["validation_omitted"] = "larger than the gallery keeps"
    except (TypeError, ValueError):
        return None
    return claim


def derive_manifest(files: dict[str, bytes], stored: StoredSource, *,
                    claim: dict[str, Any] | None = None) -> dict[str, Any]:
    """The version manifest the gallery derives from source ``files`` stored as ``stored``.

    Only the notebook's own metadata and cells are read (parsed, never executed). A notebook
    that cannot be loaded gives a manifest with its files and an empty contract.
    """
    from ..notebook import load_notebook
    from ..store import sha256_of

    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "notebook": APP_NOTEBOOK,
        "source": {"sha256": stored.sha256, "key": stored.key, "size": stored.size},
        "files": [{"path": name, "sha256": sha256_of(data), "size": len(data)}
                  for name, data in sorted(files.items())],
        "title": "", "description": "", "tags": [], "author": None, "thumbnail_source": None,
        "parameters": [], "test_parameters": [], "timeout": None, "kernel": {},
    }
    try:
        app = load_notebook(files[APP_NOTEBOOK], name=APP_NOTEBOOK)
    except (NbappsError, KeyError):
        log.debug("source %s: notebook not loadable", stored.sha256[:12], exc_info=True)
    else:
        meta = app.meta
        thumb = meta.thumbnail.strip().replace("\\", "/") if meta.thumbnail else None
        spec = app.nb.metadata.get("kernelspec") or {}
        manifest.update({
            "title": meta.title.strip(), "description": meta.description,
            "tags": [str(t) for t in meta.tags], "author": meta.author.strip() or None,
            "thumbnail_source": thumb if thumb in files else None,
            "parameters": app.contract.to_dict(),
            "test_parameters": list(meta.test_parameters), "timeout": meta.timeout,
            "schedules": list(meta.schedules),  # nbapps.schedules: read when it goes live
            "variants": list(meta.variants), "snapshot": meta.snapshot,  # nbapps.variants
            "kernel": {k: str(spec[k]) for k in ("name", "display_name", "language")
                       if isinstance(spec, dict) and k in spec},
        })
    if claim:
        manifest["client_claim"] = claim
    return manifest


def runner_manifest(version: Any, source_sha256: str) -> dict[str, Any]:
    """The ``manifest.json`` written beside a runner's copy of the source: the notebook's name
    and the gallery-derived contract (left out for a version not derived yet, so the runner
    reads the contract from the notebook itself)."""
    out: dict[str, Any] = {"notebook": APP_NOTEBOOK, "sha256": source_sha256,
                           "version": getattr(version, "sha256", None)}
    manifest = getattr(version, "manifest", None)
    if isinstance(manifest, dict) and not manifest.get("legacy") \
            and isinstance(manifest.get("parameters"), list):
        out["parameters"] = list(manifest["parameters"])
    return out


__all__ = ["SCHEMA", "client_claim", "derive_manifest", "is_derived", "runner_manifest",
           "source_ref"]
