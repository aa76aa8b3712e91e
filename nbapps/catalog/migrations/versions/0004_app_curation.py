"""Gallery curation: featured rank and category per app (issue 11).

``apps.featured``: position on the gallery's front page (1 first; NULL: not featured).
``apps.category``: the gallery section an app is listed under (NULL: none). Both are set by an
admin (``PATCH /api/apps/<slug>``) or by the demo from ``gallery/gallery.yaml``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (nullable): SQLite does it in place, so the apps table (and the FTS
    # triggers on it) is never rebuilt
    op.add_column("apps", sa.Column("featured", sa.Integer, nullable=True))
    op.add_column("apps", sa.Column("category", sa.String(64), nullable=True))
    op.create_index("ix_apps_featured", "apps", ["featured"])
    op.create_index("ix_apps_category", "apps", ["category"])


def downgrade() -> None:
    op.drop_index("ix_apps_category", table_name="apps")
    op.drop_index("ix_apps_featured", table_name="apps")
    with op.batch_alter_table("apps", recreate="never") as batch:
        batch.drop_column("category")
        batch.drop_column("featured")
