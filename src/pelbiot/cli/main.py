"""The ``pelbiot`` command. Logging is configured here and nowhere else."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

import click

from pelbiot import __version__
from pelbiot.errors import ConfigError
from pelbiot.security.redaction import install_redaction
from pelbiot.settings import Settings, load_settings
from pelbiot.sim.simulator import SimulatorConfig

logger = logging.getLogger(__name__)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("amqtt", "transitions", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn logs WebSocket handshakes with their query string (`?token=`): redact secrets.
    install_redaction()


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="pelbiot")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """PELBIOT: real-time monitoring of electrical panels and transformers."""
    _configure_logging(verbose)
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", default=None, help="Bind address (PELBIOT_HTTP_HOST).")
@click.option("--port", type=int, default=None, help="HTTP port (PELBIOT_HTTP_PORT).")
@click.option(
    "--embedded-broker-port",
    type=int,
    default=1883,
    show_default=True,
    help="Port of the embedded broker, used when PELBIOT_MQTT_URL is unset.",
)
def serve(host: str | None, port: int | None, embedded_broker_port: int) -> None:
    """Run ingest, API and dashboard (production mode when PELBIOT_MQTT_URL is set)."""
    from pelbiot.cli.launcher import run_process

    settings = _settings(http_host=host, http_port=port)
    broker_port = None if settings.mqtt_url else embedded_broker_port
    if broker_port is not None:
        logger.info("PELBIOT_MQTT_URL is unset: starting the embedded broker on %d", broker_port)
    asyncio.run(run_process(settings, embedded_broker_port=broker_port, on_ready=_announce))


@main.command()
def migrate() -> None:
    """Bring the database schema up to date (serve does this on start too)."""
    from pelbiot.storage.db import make_engine
    from pelbiot.storage.migrations import upgrade

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"database at {_redacted(settings.effective_database_url)} is up to date")


@main.command()
@click.option("--panels", type=click.IntRange(1, 10_000), default=5, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(0.001),
    default=2.0,
    show_default=True,
    help="Seconds between readings of one panel.",
)
@click.option("--broker", default=None, help="Broker URL (default: PELBIOT_MQTT_URL).")
@click.option(
    "--seed-topics",
    is_flag=True,
    help="Publish like the original simulator: panel/trafo1/volt etc., plain numbers.",
)
@click.option("--prefix", default=None, help="Topic prefix (PELBIOT_TOPIC_PREFIX).")
@click.option(
    "--sag-rate",
    type=click.FloatRange(0, 1),
    default=0.002,
    show_default=True,
    help="Chance per reading that a voltage sag starts.",
)
@click.option("--swell-rate", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option("--overload-rate", type=click.FloatRange(0, 1), default=0.001, show_default=True)
@click.option(
    "--dropout-rate",
    type=click.FloatRange(0, 1),
    default=0.0005,
    show_default=True,
    help="Chance per reading that a meter goes silent for a while.",
)
@click.option("--seed", type=int, default=None, help="Random seed for reproducible runs.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def simulate(
    panels: int,
    interval: float,
    broker: str | None,
    seed_topics: bool,
    prefix: str | None,
    sag_rate: float,
    swell_rate: float,
    overload_rate: float,
    dropout_rate: float,
    seed: int | None,
    duration: float | None,
) -> None:
    """Publish realistic three-phase meter readings to a broker."""
    from pelbiot.sim.simulator import run_simulator_until_signal

    settings = _settings()
    url = broker or settings.mqtt_url
    if not url:
        raise click.ClickException("give --broker mqtt://host:port or set PELBIOT_MQTT_URL")
    config = SimulatorConfig(
        panels=panels,
        interval_s=interval,
        seed_topics=seed_topics,
        prefix=prefix or settings.topic_prefix,
        sag_rate=sag_rate,
        swell_rate=swell_rate,
        overload_rate=overload_rate,
        dropout_rate=dropout_rate,
        seed=seed,
        zone=settings.zone,
    )
    try:
        asyncio.run(run_simulator_until_signal(config, url, duration))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


@main.command()
@click.option("--panels", type=click.IntRange(1, 500), default=6, show_default=True)
@click.option("--interval", type=click.FloatRange(0.05), default=2.0, show_default=True)
@click.option("--port", type=int, default=None, help="HTTP port (PELBIOT_HTTP_PORT).")
@click.option(
    "--broker-port",
    type=int,
    default=0,
    show_default=True,
    help="Embedded broker port; 0 picks a free one.",
)
def demo(panels: int, interval: float, port: int | None, broker_port: int) -> None:
    """Everything on one machine: embedded broker, simulated meters, the server."""
    from pelbiot.cli.launcher import run_process
    from pelbiot.ingest.broker import free_port
    from pelbiot.sim.demo_site import DEMO_ADMIN, demo_admin_password, register_demo_panels

    settings = _settings(http_port=port)
    register_demo_panels(settings, panels)
    password = demo_admin_password(settings)
    login_note = f"Demo login: user {DEMO_ADMIN!r}, password {password!r} (new at every start)"
    announce = _announce_with(login_note)
    broker_port = broker_port or free_port()
    sim = SimulatorConfig(
        panels=panels, interval_s=interval, prefix=settings.topic_prefix, zone=settings.zone
    )
    if settings.mqtt_url:
        logger.info("demo uses the configured broker %s", _redacted(settings.mqtt_url))
        asyncio.run(run_process(settings, simulator=sim, on_ready=announce))
        return
    asyncio.run(
        run_process(settings, embedded_broker_port=broker_port, simulator=sim, on_ready=announce)
    )


def _announce_with(note: str) -> Callable[[Settings], None]:
    def announce(settings: Settings) -> None:
        _announce(settings)
        click.echo(f"{note}\n", err=True)

    return announce


def _announce(settings: Settings) -> None:
    wildcard = settings.http_host in ("0.0.0.0", "::")  # noqa: S104 - only compared
    host = "localhost" if wildcard else settings.http_host
    base = f"http://{host}:{settings.http_port}"
    lines = [
        "",
        "PELBIOT is running",
        f"  API docs:      {base}/docs",
        f"  health:        {base}/health",
        f"  panels:        {base}/api/v1/panels",
        f"  latest values: {base}/api/v1/latest",
        f"  MQTT broker:   {_redacted(settings.mqtt_url or '')}",
        f"  database:      {_redacted(settings.effective_database_url)}",
        "Press Ctrl+C to stop.",
        "",
    ]
    click.echo("\n".join(lines), err=True)


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _register_account_commands() -> None:
    from pelbiot.cli.accounts import apikey, user
    from pelbiot.cli.devices import device

    main.add_command(user)
    main.add_command(apikey)
    main.add_command(device)


_register_account_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
