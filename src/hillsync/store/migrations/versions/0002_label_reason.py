"""Why a label: label_elevation_source and label_reason on activities and runs.

Revision ID: 0002_label_reason
Revises: 0001
Create Date: 2026-12-06

Rows classified before this revision keep NULL until `hillsync reclassify` fills them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_label_reason"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("activities", "runs")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("label_elevation_source", sa.String(length=10), nullable=True)
            )
            batch.add_column(sa.Column("label_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("label_reason")
            batch.drop_column("label_elevation_source")
