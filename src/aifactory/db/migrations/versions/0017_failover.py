"""failover: replicated checkpoints, stale attempts to cancel, site outages

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_copies",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("factory_id", sa.Integer(), nullable=False),
        sa.Column("copied_at", sa.DateTime(), nullable=False),
        sa.Column("staged_attempt", sa.Integer(), nullable=True),
        sa.Column("staged_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["factory_id"],
            ["factories.id"],
            name=op.f("fk_checkpoint_copies_factory_id_factories"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_checkpoint_copies_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_checkpoint_copies")),
    )
    with op.batch_alter_table("checkpoint_copies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checkpoint_copies_factory_id"), ["factory_id"], unique=False
        )
    op.create_table(
        "stale_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("factory_id", sa.Integer(), nullable=False),
        sa.Column("backend_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["factory_id"], ["factories.id"], name=op.f("fk_stale_attempts_factory_id_factories")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_stale_attempts_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stale_attempts")),
    )
    with op.batch_alter_table("stale_attempts", schema=None) as batch_op:
        for column in ("factory_id", "job_id"):
            batch_op.create_index(batch_op.f(f"ix_stale_attempts_{column}"), [column], unique=False)
    op.create_table(
        "site_outages",
        sa.Column("factory_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["factory_id"], ["factories.id"], name=op.f("fk_site_outages_factory_id_factories")
        ),
        sa.PrimaryKeyConstraint("factory_id", name=op.f("pk_site_outages")),
    )


def downgrade() -> None:
    op.drop_table("site_outages")
    op.drop_table("stale_attempts")
    op.drop_table("checkpoint_copies")
