"""Hill training: hill-repeat sessions per activity and run, digest attachments, weekly marks.

Revision ID: hill_training
Revises: share_links_push_subscriptions
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hill_training"
down_revision: str | None = "share_links_push_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.add_column(sa.Column("hill_repeats", sa.JSON(), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("hill_repeats", sa.JSON(), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attachment", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("attachment_name", sa.String(length=200), nullable=True))
    op.create_table(
        "weekly_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("athlete_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["athlete_id"],
            ["athletes.id"],
            name=op.f("fk_weekly_marks_athlete_id_athletes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weekly_marks")),
        sa.UniqueConstraint(
            "athlete_id", "kind", "period", name=op.f("uq_weekly_marks_athlete_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("weekly_marks")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attachment_name")
        batch.drop_column("attachment")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("hill_repeats")
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("hill_repeats")
