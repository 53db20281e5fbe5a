"""serving: inference endpoints (replicas, keys, metered requests), interactive sessions, and
the working directory of each job attempt (where a relative checkpoint_dir lives)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("project_code", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_endpoints_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["project_code"], ["projects.code"], name=op.f("fk_endpoints_project_code_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
    )
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_endpoints_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_endpoints_project_code"), ["project_code"], unique=False
        )
        batch_op.create_index(
            "ux_endpoints_live_name",
            ["project_code", "name"],
            unique=True,
            sqlite_where=sa.text("state != 'stopped'"),
            postgresql_where=sa.text("state != 'stopped'"),
        )

    op.create_table(
        "endpoint_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_endpoint_keys_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["endpoints.id"], name=op.f("fk_endpoint_keys_endpoint_id_endpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_keys")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_endpoint_keys_token_hash")),
    )
    with op.batch_alter_table("endpoint_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_endpoint_keys_created_by"), ["created_by"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_endpoint_keys_endpoint_id"), ["endpoint_id"], unique=False
        )

    op.create_table(
        "endpoint_replicas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ready_at", sa.DateTime(), nullable=True),
        sa.Column("drain_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_replicas_endpoint_id_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_endpoint_replicas_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_replicas")),
        sa.UniqueConstraint("job_id", name=op.f("uq_endpoint_replicas_job_id")),
    )
    with op.batch_alter_table("endpoint_replicas", schema=None) as batch_op:
        batch_op.create_index("ix_endpoint_replicas_live", ["endpoint_id", "state"], unique=False)

    op.create_table(
        "endpoint_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("replica_id", sa.Integer(), nullable=True),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_requests_endpoint_id_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["endpoint_keys.id"], name=op.f("fk_endpoint_requests_key_id_endpoint_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_requests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_endpoint_requests_request_id")),
    )
    with op.batch_alter_table("endpoint_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_endpoint_requests_endpoint_id", ["endpoint_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_endpoint_requests_key_id"), ["key_id"], unique=False)
        batch_op.create_index(
            "ix_endpoint_requests_open", ["endpoint_id", "ended_at"], unique=False
        )

    op.create_table(
        "interactive_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("project_code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ready_at", sa.DateTime(), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_interactive_sessions_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_interactive_sessions_owner_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["project_code"],
            ["projects.code"],
            name=op.f("fk_interactive_sessions_project_code_projects"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactive_sessions")),
    )
    with op.batch_alter_table("interactive_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_interactive_sessions_job_id"), ["job_id"], unique=False
        )
        batch_op.create_index("ix_interactive_sessions_live", ["state", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_interactive_sessions_owner_id"), ["owner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_interactive_sessions_project_code"), ["project_code"], unique=False
        )

    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workdir", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_attempts", schema=None) as batch_op:
        batch_op.drop_column("workdir")

    with op.batch_alter_table("interactive_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interactive_sessions_project_code"))
        batch_op.drop_index(batch_op.f("ix_interactive_sessions_owner_id"))
        batch_op.drop_index("ix_interactive_sessions_live")
        batch_op.drop_index(batch_op.f("ix_interactive_sessions_job_id"))

    op.drop_table("interactive_sessions")
    with op.batch_alter_table("endpoint_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoint_requests_open")
        batch_op.drop_index(batch_op.f("ix_endpoint_requests_key_id"))
        batch_op.drop_index("ix_endpoint_requests_endpoint_id")

    op.drop_table("endpoint_requests")
    with op.batch_alter_table("endpoint_replicas", schema=None) as batch_op:
        batch_op.drop_index("ix_endpoint_replicas_live")

    op.drop_table("endpoint_replicas")
    with op.batch_alter_table("endpoint_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_endpoint_keys_endpoint_id"))
        batch_op.drop_index(batch_op.f("ix_endpoint_keys_created_by"))

    op.drop_table("endpoint_keys")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_endpoints_live_name",
            sqlite_where=sa.text("state != 'stopped'"),
            postgresql_where=sa.text("state != 'stopped'"),
        )
        batch_op.drop_index(batch_op.f("ix_endpoints_project_code"))
        batch_op.drop_index(batch_op.f("ix_endpoints_owner_id"))

    op.drop_table("endpoints")
