"""multi-site entitlements (allocation scope; federation allocations and resource rows)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=16), server_default="partition", nullable=False)
        )
        batch_op.alter_column("factory_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("partition_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("proposal_resources", schema=None) as batch_op:
        batch_op.alter_column("partition_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # Federation allocations and rows have no partition to go back to: they go first.
    op.execute("DELETE FROM proposal_resources WHERE partition_id IS NULL")
    with op.batch_alter_table("proposal_resources", schema=None) as batch_op:
        batch_op.alter_column("partition_id", existing_type=sa.Integer(), nullable=False)
    op.execute(
        "DELETE FROM ledger_entries WHERE allocation_id IN "
        "(SELECT id FROM allocations WHERE scope = 'federation')"
    )
    op.execute(
        "DELETE FROM ledger_days WHERE allocation_id IN "
        "(SELECT id FROM allocations WHERE scope = 'federation')"
    )
    op.execute(
        "UPDATE jobs SET allocation_id = NULL WHERE allocation_id IN "
        "(SELECT id FROM allocations WHERE scope = 'federation')"
    )
    op.execute("DELETE FROM allocations WHERE scope = 'federation'")
    with op.batch_alter_table("allocations", schema=None) as batch_op:
        batch_op.alter_column("partition_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("factory_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("scope")
