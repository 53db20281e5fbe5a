"""site estimates: the start estimates of sites' own schedulers (squeue --start), per partition

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_estimates",
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("factory_id", sa.Integer(), nullable=False),
        sa.Column("pending_jobs", sa.Integer(), nullable=False),
        sa.Column("latest_start_at", sa.DateTime(), nullable=True),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["factory_id"], ["factories.id"], name=op.f("fk_site_estimates_factory_id_factories")
        ),
        sa.ForeignKeyConstraint(
            ["partition_id"],
            ["partitions.id"],
            name=op.f("fk_site_estimates_partition_id_partitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("partition_id", name=op.f("pk_site_estimates")),
    )
    with op.batch_alter_table("site_estimates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_site_estimates_factory_id"), ["factory_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("site_estimates")
