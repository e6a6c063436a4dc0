"""Account and key hardening (issue #9).

- ``sessions.previous_refresh_hash``: the refresh secret the last rotation replaced, so a replayed
  (stolen and already used) refresh token is recognised and ends the session;
  ``sessions.rotated_ms``: when, so a replay within seconds (two tabs refreshing at once) is
  refused without ending the session.
- ``api_keys.created_by_user_id``: the user whose current rights bound the key (NULL: made by the
  CLI, the key keeps its own scopes). Existing keys are matched to a user by ``created_by`` name.
- ``login_failures``: failed logins per (account, address): lockout and back-off hit only the
  address that guesses, not the account's owner elsewhere.
- usernames unique case-insensitively (an index on ``lower(username)``). If two existing accounts
  differ only in case the upgrade stops, naming them, and changes nothing: rename or remove one
  (``UPDATE users SET username = ... WHERE id = ...``) and run ``pelbiot migrate`` again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _refuse_case_duplicates() -> None:
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(username) AS name, count(*) AS n FROM users "
                "GROUP BY lower(username) HAVING count(*) > 1"
            )
        )
        .all()
    )
    if clashes:
        names = ", ".join(sorted(str(row.name) for row in clashes))
        raise RuntimeError(
            "usernames must be unique ignoring case, but these are used by more than one "
            f"account: {names}. Rename or remove the extra accounts, then migrate again."
        )


def upgrade() -> None:
    _refuse_case_duplicates()
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("previous_refresh_hash", sa.String(128), nullable=True))
        batch.add_column(sa.Column("rotated_ms", sa.BigInteger, nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("created_by_user_id", sa.Integer, nullable=True))
    op.execute(
        "UPDATE api_keys SET created_by_user_id = "
        "(SELECT users.id FROM users WHERE users.username = api_keys.created_by) "
        "WHERE created_by <> 'cli'"
    )
    op.create_table(
        "login_failures",
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_ms", sa.BigInteger, nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("created_by_user_id")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("rotated_ms")
        batch.drop_column("previous_refresh_hash")
    op.drop_index("uq_users_username_lower", table_name="users")
