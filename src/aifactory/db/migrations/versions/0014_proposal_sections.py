"""review-grade proposals (sections, resources per system, attachments)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sections", sa.JSON(), nullable=True))
    op.create_table(
        "proposal_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("partition_id", sa.Integer(), nullable=False),
        sa.Column("gpu_hours_milli", sa.BigInteger(), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partition_id"],
            ["partitions.id"],
            name=op.f("fk_proposal_resources_partition_id_partitions"),
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_proposal_resources_proposal_id_proposals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal_resources")),
        sa.UniqueConstraint("proposal_id", "position", name="proposal_resource_pos"),
    )
    with op.batch_alter_table("proposal_resources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_proposal_resources_partition_id"), ["partition_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_proposal_resources_proposal_id"), ["proposal_id"], unique=False
        )
    op.create_table(
        "proposal_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploader_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_proposal_attachments_proposal_id_proposals"),
        ),
        sa.ForeignKeyConstraint(
            ["uploader_id"], ["users.id"], name=op.f("fk_proposal_attachments_uploader_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal_attachments")),
    )
    with op.batch_alter_table("proposal_attachments", schema=None) as batch_op:
        for column in ("proposal_id", "sha256", "uploader_id"):
            batch_op.create_index(
                batch_op.f(f"ix_proposal_attachments_{column}"), [column], unique=False
            )


def downgrade() -> None:
    op.drop_table("proposal_attachments")
    op.drop_table("proposal_resources")
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_column("sections")
