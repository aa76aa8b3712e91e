"""Runs of approved versions (issue 14): the ``runs`` table beside ``jobs``.

A run is a job of kind ``run`` (same id, same queue and worker protocol); ``runs`` adds what
only runs have: the app (for per-app listings and retention), the origin (``api``,
``schedule``, ``snapshot``) and the batch a request grouped it in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("job_id", sa.Integer,
                  sa.ForeignKey("jobs.id", name="fk_runs_job", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("app_id", sa.Integer,
                  sa.ForeignKey("apps.id", name="fk_runs_app", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("batch", sa.String(32), nullable=True),
    )
    op.create_index("ix_runs_batch", "runs", ["batch"])
    op.create_index("ix_runs_app_origin", "runs", ["app_id", "origin", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_app_origin", table_name="runs")
    op.drop_index("ix_runs_batch", table_name="runs")
    op.drop_table("runs")
