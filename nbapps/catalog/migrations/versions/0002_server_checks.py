"""Server-side checks: jobs table, version check columns and states (issue 10).

Adds the ``jobs`` table (the durable queue of the gallery's worker pool) and marks every version
recorded so far as *legacy*: its manifest and thumbnail were written by the uploader's client,
so they are moved aside (kept under ``client_claim``, never shown as the truth) until the
gallery has checked the version's source itself. The new version states (``validating``,
``failed``) need no schema change.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version_id", sa.Integer,
                  sa.ForeignKey("versions.id", name="fk_jobs_version"), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", name="fk_jobs_owner"),
                  nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("artifacts", sa.JSON, nullable=False),
    )
    op.create_index("ix_jobs_queue", "jobs", ["state", "kind", "priority", "id"])
    op.create_index("ix_jobs_version_kind", "jobs", ["version_id", "kind"])
    _mark_legacy_versions()


def _mark_legacy_versions() -> None:
    """Client-written manifests and thumbnails of existing versions stop counting as facts."""
    versions = sa.table("versions", sa.column("id", sa.Integer),
                        sa.column("manifest", sa.JSON), sa.column("thumbnail", sa.String))
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.select(versions.c.id, versions.c.manifest)
                            .where(versions.c.id > last).order_by(versions.c.id)
                            .limit(_BATCH)).all()
        if not rows:
            return
        for version_id, manifest in rows:
            bind.execute(versions.update().where(versions.c.id == version_id)
                         .values(manifest=legacy_manifest(manifest), thumbnail=None))
            last = version_id


def legacy_manifest(client_manifest: Any) -> dict[str, Any]:
    """What the gallery keeps of a manifest an earlier nbapps took from a client."""
    return {"legacy": True, "notebook": "app.ipynb", "client_claim": client_manifest}


def downgrade() -> None:
    op.drop_index("ix_jobs_version_kind", table_name="jobs")
    op.drop_index("ix_jobs_queue", table_name="jobs")
    op.drop_table("jobs")
