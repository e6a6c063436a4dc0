"""Account and key hardening (issue #9).

- ``sessions.previous_refresh_hash``: the refresh secret the last rotation replaced, so a replayed
  (stolen and already used) refresh token is recognised and ends the session;
  ``sessions.rotated_ms``: when, so a replay within seconds (two tabs refreshing at once) is
  refused without ending the session.
- ``api_keys.created_by_user_id``: the user whose current rights bound the key (NULL: made by the
  CLI, the key keeps its own scopes). Existing keys are matched to a user by ``created_by`` name,
  a key made with a key (``created_by = 'key:<name>'``) through that key when its name is
  unique; a key whose maker cannot be found (renamed or deleted user, ambiguous parent) is bound
  to no user (id 0) and so suspended: an upgrade never widens a key to "no bound".
- existing keys with ``region = ''`` (which used to mean "every region") are revoked: a key is
  limited to a real region or to none; make a new key with the intended limit.
- ``sessions.rotated_from``: the address of the last rotation; the replay grace holds only for it.
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


_NO_USER = 0  # no account has id 0: a key bound to it is suspended


def _bind_existing_keys() -> None:
    op.execute(
        "UPDATE api_keys SET created_by_user_id = "
        "(SELECT users.id FROM users WHERE users.username = api_keys.created_by) "
        "WHERE created_by <> 'cli' AND created_by NOT LIKE 'key:%'"
    )
    # Keys made with keys: through the parent, one level per pass (chains are short).
    for _ in range(8):
        op.execute(
            "UPDATE api_keys SET created_by_user_id = ("
            "SELECT max(p.created_by_user_id) FROM api_keys p "
            "WHERE 'key:' || p.name = api_keys.created_by AND p.created_by_user_id > 0) "
            "WHERE created_by LIKE 'key:%' AND created_by_user_id IS NULL "
            "AND (SELECT count(*) FROM api_keys p WHERE 'key:' || p.name = api_keys.created_by) = 1"
        )
    op.execute(
        f"UPDATE api_keys SET created_by_user_id = {_NO_USER} "
        "WHERE created_by <> 'cli' AND created_by_user_id IS NULL"
    )
    op.execute(
        "UPDATE api_keys SET revoked_ms = CAST(strftime('%s', 'now') AS BIGINT) * 1000 "
        "WHERE region = '' AND revoked_ms IS NULL"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE api_keys SET revoked_ms = (extract(epoch from now()) * 1000)::bigint "
        "WHERE region = '' AND revoked_ms IS NULL"
    )


def upgrade() -> None:
    _refuse_case_duplicates()
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("previous_refresh_hash", sa.String(128), nullable=True))
        batch.add_column(sa.Column("rotated_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("rotated_from", sa.String(64), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("created_by_user_id", sa.Integer, nullable=True))
    _bind_existing_keys()
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
        batch.drop_column("rotated_from")
        batch.drop_column("rotated_ms")
        batch.drop_column("previous_refresh_hash")
    op.drop_index("uq_users_username_lower", table_name="users")
