"""Gallery replicas and their internal addresses (issue 13): the ``replicas`` table.

One row per running gallery process (:class:`nbapps.catalog.models.ReplicaRow`): a replica that
receives a request for an app kernel it does not own asks its live peers, found here, and
forwards the request to the owner (:mod:`nbapps.server.peers`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_replicas_heartbeat_at", "replicas", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_replicas_heartbeat_at", table_name="replicas")
    op.drop_table("replicas")
