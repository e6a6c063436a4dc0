"""``pelbiot user ...`` and ``pelbiot apikey ...``: account administration from the shell."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from pelbiot.errors import PelbiotError
from pelbiot.security.api_keys import ApiKeys
from pelbiot.security.audit import AuditLog
from pelbiot.security.permissions import SCOPES, Role
from pelbiot.security.sessions import account_services
from pelbiot.security.users import Users
from pelbiot.settings import Settings, load_settings
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade


@contextmanager
def _services() -> Iterator[tuple[Users, ApiKeys, Settings]]:
    try:
        settings = load_settings()
    except PelbiotError as exc:
        raise click.ClickException(exc.message) from None
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        audit = AuditLog(engine)
        yield account_services(engine, settings, audit)[0], ApiKeys(engine, audit), settings
    except PelbiotError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


def _read_password(password: str | None, from_stdin: bool, *, confirm: bool = True) -> str:
    if password and from_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if password:
        return password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))


@click.group()
def user() -> None:
    """Create and manage user accounts."""


@user.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", default=None, help="Prefer --password-stdin: argv is visible.")
@click.option("--password-stdin", "password_stdin", is_flag=True, help="Read it from stdin.")
@click.option("--region", "regions", multiple=True, help="Limit an operator/viewer (repeatable).")
def create_user(
    username: str, role: str, password: str | None, password_stdin: bool, regions: tuple[str, ...]
) -> None:
    """Create a user."""
    secret = _read_password(password, password_stdin)
    with _services() as (accounts, _keys, _settings):
        created = accounts.create(username, secret, Role(role), regions=list(regions) or None)
    click.echo(f"created {created['role']} {created['username']!r} (id {created['id']})")


@user.command("list")
def list_users() -> None:
    """List users."""
    with _services() as (accounts, _keys, _settings):
        rows = accounts.all()
    if not rows:
        click.echo("no users yet")
    for row in rows:
        flags = [f for f in ("disabled", "locked") if row[f]]
        regions = ",".join(row["regions"]) if row["regions"] else "all regions"
        click.echo(
            f"{row['id']:>4}  {row['username']:<24} {row['role']:<12} {regions}"
            + (f"  [{' '.join(flags)}]" if flags else "")
        )


@user.command("passwd")
@click.argument("username")
@click.option("--password", default=None)
@click.option("--password-stdin", "password_stdin", is_flag=True)
def passwd(username: str, password: str | None, password_stdin: bool) -> None:
    """Set a user's password (ends the user's sessions)."""
    secret = _read_password(password, password_stdin)
    with _services() as (accounts, _keys, _settings):
        accounts.set_password(accounts.by_name(username)["id"], secret, actor=None)
    click.echo(f"password of {username!r} changed")


@user.command("disable")
@click.argument("username")
def disable(username: str) -> None:
    """Disable a user (ends the user's sessions)."""
    with _services() as (accounts, _keys, _settings):
        accounts.update(accounts.by_name(username)["id"], {"disabled": True}, actor=None)
    click.echo(f"{username!r} disabled")


@user.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Enable a disabled user."""
    with _services() as (accounts, _keys, _settings):
        accounts.update(accounts.by_name(username)["id"], {"disabled": False}, actor=None)
    click.echo(f"{username!r} enabled")


@user.command("unlock")
@click.argument("username")
def unlock(username: str) -> None:
    """Unlock a user locked by failed logins."""
    with _services() as (accounts, _keys, _settings):
        accounts.unlock(accounts.by_name(username)["id"], actor=None)
    click.echo(f"{username!r} unlocked")


@click.group()
def apikey() -> None:
    """Create and revoke API keys."""


@apikey.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES), required=True)
@click.option("--panel", default=None, help="Restrict the key to one panel.")
@click.option("--region", default=None, help="Restrict the key to one region.")
def create_key(name: str, scopes: tuple[str, ...], panel: str | None, region: str | None) -> None:
    """Create an API key and print it (shown once)."""
    with _services() as (_accounts, keys, _settings):
        record, key = keys.create(
            name=name, scopes=list(scopes), actor="cli", panel_id=panel, region=region
        )
    click.echo(key)
    click.echo(
        f"(key {record['id']}, prefix {record['prefix']}; store it now, it is not shown again)",
        err=True,
    )


@apikey.command("list")
def list_keys() -> None:
    """List API keys (never the secret)."""
    with _services() as (_accounts, keys, _settings):
        for k in keys.all():
            state = "active" if k["active"] else "revoked/expired"
            if k["active"] and k["suspended"]:
                state = "suspended (creator disabled)"
            click.echo(
                f"{k['id']:>4}  {k['prefix']}  {k['name']:<24} {','.join(k['scopes']):<16} {state}"
            )
