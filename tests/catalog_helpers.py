"""Helpers shared by the catalog tests (users, submissions, bulk seeding)."""
from __future__ import annotations

import hashlib

from nbapps.catalog import Catalog, Submission

USERS = {"ana": "analyst", "alf": "analyst", "rita": "reviewer", "rob": "reviewer",
         "adam": "admin", "vera": "viewer"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def add_users(cat: Catalog, **only: str) -> None:
    """Create the standard users (no passwords: hashing is slow and not tested here)."""
    for name, role in (only or USERS).items():
        cat.create_user(name, role, None, actor="test")


def submit(cat: Catalog, slug: str = "sales", n: int = 1, submitter: str = "ana", *,
           title: str | None = None, description: str = "Quarterly sales by region",
           tags: tuple[str, ...] = ("sales", "eu")) -> Submission:
    digest = sha(f"{slug}-{n}")
    return cat.submit(slug=slug, title=title or f"{slug.title()} v{n}", description=description,
                      tags=tags, sha256=digest, manifest={"name": slug, "n": n},
                      store_key=f"{digest[:2]}/{digest}.nbapp", submitter=submitter,
                      size=1234)


def publish(cat: Catalog, slug: str = "sales", n: int = 1, submitter: str = "ana",
            reviewer: str = "rita", **kw) -> int:
    """Submit and approve; return the version id."""
    sub = submit(cat, slug, n, submitter, **kw)
    cat.decide(sub.version.id, reviewer, "approve", "ok")
    return sub.version.id
