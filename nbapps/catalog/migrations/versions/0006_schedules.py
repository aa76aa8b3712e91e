"""Schedules of approved versions (issue 14): the ``schedules`` table.

One row per schedule of an app's live version (``metadata.nbapps.schedules``), replaced when
another version goes live: the next firing, a pending retry, the claim that lets one gallery
replica of several fire it, the last run and its outcome, consecutive failures and the app's
*broken* state with the failing run's findings (:mod:`nbapps.catalog.schedules`).
``last_run_id`` and friends name runs (``jobs.id``) without a foreign key: run retention may
delete a run a schedule still remembers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer,
                  sa.ForeignKey("apps.id", name="fk_schedules_app", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version_id", sa.Integer,
                  sa.ForeignKey("versions.id", name="fk_schedules_version"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("paused_by", sa.String(64), nullable=True),
        sa.Column("paused_at", sa.DateTime, nullable=True),
        sa.Column("next_due_at", sa.DateTime, nullable=True),
        sa.Column("retry_at", sa.DateTime, nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_at", sa.DateTime, nullable=True),
        sa.Column("last_due_at", sa.DateTime, nullable=True),
        sa.Column("last_run_id", sa.Integer, nullable=True),
        sa.Column("run_state", sa.String(16), nullable=True),
        sa.Column("last_passed_run_id", sa.Integer, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("broken_since", sa.DateTime, nullable=True),
        sa.Column("broken_run_id", sa.Integer, nullable=True),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.UniqueConstraint("app_id", "name", name="uq_schedules_app_name"),
    )
    op.create_index("ix_schedules_next_due_at", "schedules", ["next_due_at"])
    op.create_index("ix_schedules_retry_at", "schedules", ["retry_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_retry_at", table_name="schedules")
    op.drop_index("ix_schedules_next_due_at", table_name="schedules")
    op.drop_table("schedules")
