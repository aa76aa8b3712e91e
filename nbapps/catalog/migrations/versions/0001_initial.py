"""Initial catalog schema: users, tokens, apps, tags, versions, reviews, audit, usage, search.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    sqlite = dialect == "sqlite"

    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_api_tokens_user"),
                  nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_index("ix_api_tokens_prefix", "api_tokens", ["prefix"])

    live_fks = []
    if sqlite:  # SQLite cannot add constraints later; it accepts forward references
        live_fks = [
            sa.ForeignKeyConstraint(["live_version_id"], ["versions.id"],
                                    name="fk_apps_live_version"),
            sa.ForeignKeyConstraint(["previous_live_version_id"], ["versions.id"],
                                    name="fk_apps_previous_live_version"),
        ]
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags_text", sa.Text, nullable=False),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("users.id", name="fk_apps_author"),
                  nullable=False),
        sa.Column("live_version_id", sa.Integer, nullable=True),
        sa.Column("previous_live_version_id", sa.Integer, nullable=True),
        sa.Column("view_count", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("slug", name="uq_apps_slug"),
        *live_fks,
    )
    op.create_index("ix_apps_author_id", "apps", ["author_id"])
    op.create_index("ix_apps_live_version_id", "apps", ["live_version_id"])
    op.create_index("ix_apps_updated_at", "apps", ["updated_at"])
    op.create_index("ix_apps_live_title", "apps", ["live_version_id", "title"])
    op.create_index("ix_apps_view_count", "apps", ["view_count"])

    op.create_table(
        "app_tags",
        sa.Column("app_id", sa.Integer,
                  sa.ForeignKey("apps.id", ondelete="CASCADE", name="fk_app_tags_app"),
                  primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_app_tags_tag", "app_tags", ["tag"])

    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer,
                  sa.ForeignKey("apps.id", ondelete="CASCADE", name="fk_versions_app"),
                  nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags_text", sa.Text, nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("store_key", sa.String(500), nullable=False),
        sa.Column("thumbnail", sa.String(500), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("submitter_id", sa.Integer,
                  sa.ForeignKey("users.id", name="fk_versions_submitter"), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("decided_by_id", sa.Integer,
                  sa.ForeignKey("users.id", name="fk_versions_decided_by"), nullable=True),
        sa.Column("decided_at", sa.DateTime, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.UniqueConstraint("app_id", "sha256", name="uq_versions_app_sha256"),
        sa.UniqueConstraint("app_id", "number", name="uq_versions_app_number"),
    )
    op.create_index("ix_versions_sha256", "versions", ["sha256"])
    op.create_index("ix_versions_submitter_id", "versions", ["submitter_id"])
    op.create_index("ix_versions_state", "versions", ["state"])
    if not sqlite:
        op.create_foreign_key("fk_apps_live_version", "apps", "versions",
                              ["live_version_id"], ["id"])
        op.create_foreign_key("fk_apps_previous_live_version", "apps", "versions",
                              ["previous_live_version_id"], ["id"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer,
                  sa.ForeignKey("versions.id", name="fk_reviews_version"), nullable=False),
        sa.Column("actor_id", sa.Integer, sa.ForeignKey("users.id", name="fk_reviews_actor"),
                  nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_reviews_version_id", "reviews", ["version_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("version_sha256", sa.String(64), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_action_target_at", "audit_events", ["action", "target", "at"])
    op.create_index("ix_audit_action_ip_at", "audit_events", ["action", "ip", "at"])
    op.create_index("ix_audit_actor", "audit_events", ["actor"])

    op.create_table(
        "usage_daily",
        sa.Column("app_id", sa.Integer,
                  sa.ForeignKey("apps.id", ondelete="CASCADE", name="fk_usage_daily_app"),
                  primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("views", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("render_ms_sum", sa.Float, nullable=False),
        sa.Column("render_count", sa.BigInteger, nullable=False),
    )

    if sqlite:
        _sqlite_search_and_guards()
    else:
        _postgresql_search_and_guards()


def _sqlite_search_and_guards() -> None:
    # External-content FTS5 index over apps, kept in sync by triggers (only when the indexed
    # columns change: view counters do not touch it).
    op.execute(
        "CREATE VIRTUAL TABLE apps_fts USING fts5("
        "title, description, tags_text, content='apps', content_rowid='id', "
        "tokenize=\"unicode61 remove_diacritics 2\")"
    )
    op.execute(
        "CREATE TRIGGER apps_fts_ai AFTER INSERT ON apps BEGIN "
        "INSERT INTO apps_fts(rowid, title, description, tags_text) "
        "VALUES (new.id, new.title, new.description, new.tags_text); END"
    )
    op.execute(
        "CREATE TRIGGER apps_fts_ad AFTER DELETE ON apps BEGIN "
        "INSERT INTO apps_fts(apps_fts, rowid, title, description, tags_text) "
        "VALUES ('delete', old.id, old.title, old.description, old.tags_text); END"
    )
    op.execute(
        "CREATE TRIGGER apps_fts_au AFTER UPDATE OF title, description, tags_text ON apps BEGIN "
        "INSERT INTO apps_fts(apps_fts, rowid, title, description, tags_text) "
        "VALUES ('delete', old.id, old.title, old.description, old.tags_text); "
        "INSERT INTO apps_fts(rowid, title, description, tags_text) "
        "VALUES (new.id, new.title, new.description, new.tags_text); END"
    )
    for table in ("audit_events", "reviews"):
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _postgresql_search_and_guards() -> None:
    # Filled by the repository (nbapps.catalog.versions.set_app_meta) from accent-folded text,
    # the way SQLite's FTS5 "remove_diacritics" folds it: "cafe" finds "Café" on both.
    op.execute("ALTER TABLE apps ADD COLUMN search_vector tsvector")
    op.execute("CREATE INDEX ix_apps_search_vector ON apps USING GIN (search_vector)")
    op.execute(
        "CREATE FUNCTION nbapps_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in ("audit_events", "reviews"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION nbapps_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION nbapps_append_only()"
        )


def downgrade() -> None:
    raise NotImplementedError("the initial schema cannot be downgraded; drop the database")
