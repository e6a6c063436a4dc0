"""Panels, series, readings and latest values.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "panels",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("location", sa.String(200), nullable=True),
        sa.Column("phases", sa.Integer, nullable=False),
        sa.Column("nominal_voltage", sa.Float, nullable=True),
        sa.Column("rated_current", sa.Float, nullable=True),
        sa.Column("kva_rating", sa.Float, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_panels_region", "panels", ["region"])
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "panel_id",
            sa.String(64),
            sa.ForeignKey("panels.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("known", sa.Boolean, nullable=False),
        sa.UniqueConstraint("panel_id", "metric", name="uq_series_panel_metric"),
        # Never reuse a deleted series id (SQLite would hand out max(id)+1 again).
        sqlite_autoincrement=True,
    )
    op.create_table(
        "readings",
        sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts_ms", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latest",
        sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("latest")
    op.drop_table("readings")
    op.drop_table("series")
    op.drop_index("ix_panels_region", table_name="panels")
    op.drop_table("panels")
