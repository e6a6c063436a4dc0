"""Device credentials for the broker (issue #9): devices and the panels each may publish for.

Device names are unique ignoring case (an index on ``lower(name)``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("disabled_ms", sa.BigInteger, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sqlite_autoincrement=True,
    )
    # MQTT usernames are case-sensitive, people are not: no two devices differ only by case
    # (the registry checks first; this settles concurrent creates).
    op.create_index("uq_devices_name_lower", "devices", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "device_panels",
        sa.Column(
            "device_id",
            sa.Integer,
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("panel_id", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("device_panels")
    op.drop_index("uq_devices_name_lower", table_name="devices")
    op.drop_table("devices")
