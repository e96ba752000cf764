"""Several workers: when a source's lease began, and one rate budget per API application.

Revision ID: leases_and_api_budgets
Revises: sync_state_stale_since
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "leases_and_api_budgets"
down_revision: str | None = "hill_training"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "api_budgets",
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("short_used", sa.Integer(), nullable=False),
        sa.Column("long_used", sa.Integer(), nullable=False),
        sa.Column("short_reported", sa.Integer(), nullable=False),
        sa.Column("long_reported", sa.Integer(), nullable=False),
        sa.Column("short_limit", sa.Integer(), nullable=False),
        sa.Column("long_limit", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("app", "scope", name=op.f("pk_api_budgets")),
    )


def downgrade() -> None:
    op.drop_table("api_budgets")
    with op.batch_alter_table("sync_state", schema=None) as batch_op:
        batch_op.drop_column("lease_since")
