"""ledger days: the ledger summed per allocation, UTC day and kind, kept by triggers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:00:00

A usage report for a date range summed every ledger entry of every visible allocation (10 M
rows: seconds). Report ranges are whole UTC days, so per-day sums answer them exactly. The
sums are kept by triggers rather than by the Python write path so that every writer (the
ledger service, a bulk ``COPY``, an operator's SQL) keeps them, in the same transaction.

PostgreSQL: statement-level triggers with transition tables, so a ``COPY`` of a million rows
costs one grouped upsert, not a million. SQLite has only row-level triggers.

Caution for later migrations: on SQLite, ``batch_alter_table("ledger_entries")`` may rebuild
the table, which drops these triggers; such a migration must create them again
(``tests/integration/access/test_report_rollup.py`` fails if they are missing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPSERT_PG = """
    INSERT INTO ledger_days AS d (allocation_id, day, kind, amount_milli, entries)
    SELECT allocation_id, day, kind, sum(amount), sum(n) FROM delta
    GROUP BY allocation_id, day, kind
    ORDER BY allocation_id, day, kind
    ON CONFLICT (allocation_id, day, kind) DO UPDATE
    SET amount_milli = d.amount_milli + excluded.amount_milli,
        entries = d.entries + excluded.entries"""
# Emptied days (their entries deleted or moved) go, so the sums hold exactly the entries' keys.
_PRUNE_PG = """
    DELETE FROM ledger_days AS d USING old_rows AS o
    WHERE d.allocation_id = o.allocation_id AND d.day = o.at::date AND d.kind = o.kind
      AND d.entries = 0"""
_NEW_PG = (
    "SELECT allocation_id, at::date AS day, kind, amount_milli AS amount, 1 AS n FROM new_rows"
)
_OLD_PG = "SELECT allocation_id, at::date, kind, -amount_milli, -1 FROM old_rows"
_PG_DELTAS = {  # event: (rows the statement changed, prune emptied days)
    "INSERT": (_NEW_PG, False),
    "DELETE": (_OLD_PG, True),
    "UPDATE": (f"{_NEW_PG} UNION ALL {_OLD_PG}", True),
}
_REFERENCING = {
    "INSERT": "NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
    "UPDATE": "NEW TABLE AS new_rows OLD TABLE AS old_rows",
}


def _pg_statements() -> list[str]:
    out = []
    for event, (delta, prune) in _PG_DELTAS.items():
        name = f"ledger_days_{event.lower()}"
        body = f"WITH delta (allocation_id, day, kind, amount, n) AS ({delta}) {_UPSERT_PG};" + (
            f"{_PRUNE_PG};" if prune else ""
        )
        out += [
            f"CREATE FUNCTION aif_{name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {body} RETURN NULL; END $$",
            f"CREATE TRIGGER {name} AFTER {event} ON ledger_entries "
            f"REFERENCING {_REFERENCING[event]} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION aif_{name}()",
        ]
    # TRUNCATE fires no row or statement trigger above; the sums go with the entries.
    out += [
        "CREATE FUNCTION aif_ledger_days_truncate() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN DELETE FROM ledger_days; RETURN NULL; END $$",
        "CREATE TRIGGER ledger_days_truncate AFTER TRUNCATE ON ledger_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION aif_ledger_days_truncate()",
    ]
    return out


_ADD_SQLITE = """
    INSERT INTO ledger_days (allocation_id, day, kind, amount_milli, entries)
    VALUES (NEW.allocation_id, date(NEW.at), NEW.kind, NEW.amount_milli, 1)
    ON CONFLICT (allocation_id, day, kind) DO UPDATE
    SET amount_milli = amount_milli + excluded.amount_milli, entries = entries + 1;"""
_SUB_SQLITE = """
    UPDATE ledger_days SET amount_milli = amount_milli - OLD.amount_milli, entries = entries - 1
    WHERE allocation_id = OLD.allocation_id AND day = date(OLD.at) AND kind = OLD.kind;
    DELETE FROM ledger_days
    WHERE allocation_id = OLD.allocation_id AND day = date(OLD.at) AND kind = OLD.kind
      AND entries = 0;"""
_SQLITE_BODIES = {
    "INSERT": _ADD_SQLITE,
    "DELETE": _SUB_SQLITE,
    "UPDATE": _SUB_SQLITE + _ADD_SQLITE,
}

CREATE = {
    "postgresql": _pg_statements(),
    "sqlite": [
        f"CREATE TRIGGER ledger_days_{event.lower()} AFTER {event} ON ledger_entries "
        f"FOR EACH ROW BEGIN {body} END"
        for event, body in _SQLITE_BODIES.items()
    ],
}
DROP = {
    "postgresql": [
        *(
            f"DROP TRIGGER ledger_days_{e} ON ledger_entries"
            for e in ("insert", "delete", "update", "truncate")
        ),
        *(
            f"DROP FUNCTION aif_ledger_days_{e}()"
            for e in ("insert", "delete", "update", "truncate")
        ),
    ],
    "sqlite": [f"DROP TRIGGER ledger_days_{e}" for e in ("insert", "delete", "update")],
}
_DAY = {"postgresql": "at::date", "sqlite": "date(at)"}


def upgrade() -> None:
    op.create_table(
        "ledger_days",
        sa.Column("allocation_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_milli", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["allocation_id"],
            ["allocations.id"],
            name=op.f("fk_ledger_days_allocation_id_allocations"),
        ),
        sa.PrimaryKeyConstraint("allocation_id", "day", "kind", name=op.f("pk_ledger_days")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # No entry may land between the backfill and the triggers (SQLite's write lock is
        # already held by this migration's transaction).
        op.execute("LOCK TABLE ledger_entries IN SHARE ROW EXCLUSIVE MODE")
    for statement in CREATE[dialect]:
        op.execute(statement)
    day = _DAY[dialect]
    op.execute(
        "INSERT INTO ledger_days (allocation_id, day, kind, amount_milli, entries) "  # noqa: S608
        f"SELECT allocation_id, {day}, kind, sum(amount_milli), count(*) FROM ledger_entries "
        f"GROUP BY allocation_id, {day}, kind"
    )


def downgrade() -> None:
    for statement in DROP[op.get_bind().dialect.name]:
        op.execute(statement)
    op.drop_table("ledger_days")
