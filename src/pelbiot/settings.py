"""The one settings class. Every long-lived object receives it explicitly.

Values come from the environment (prefix ``PELBIOT_``) or a ``.env`` file. A bad value stops the
start with a message that names the setting (see ``load_settings``).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pelbiot.errors import ConfigError

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside development


def _default_client_id() -> str:
    # Stable across restarts so the broker keeps our persistent session.
    return f"pelbiot-{socket.gethostname()}"[:64]


class Settings(BaseSettings):
    """Configuration of a PELBIOT process. Field docs are the reference in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="PELBIOT_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses default secrets."
    )
    secret_key: str = Field(
        DEV_SECRET,
        description="Signs tokens and CSRF values. Required in production: 32+ random characters.",
    )

    # --- MQTT -------------------------------------------------------------------------------
    mqtt_url: str | None = Field(
        None,
        description="Broker URL, mqtt://[user:pass@]host[:port] or mqtts://. Unset: an embedded "
        "broker is started (`serve`: port 1883, `demo`: a free port).",
    )
    mqtt_client_id: str = Field(
        default_factory=_default_client_id,
        description="MQTT client id; keep it stable so the persistent session survives restarts. "
        "The embedded broker ignores it (a random id per start that only ingest may use).",
    )
    mqtt_username: str | None = Field(None, description="Broker username (overrides the URL's).")
    mqtt_password: str | None = Field(None, description="Broker password (overrides the URL's).")
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for mqtts://.")
    mqtt_cert_file: Path | None = Field(None, description="Client certificate for mqtts://.")
    mqtt_key_file: Path | None = Field(None, description="Client key for mqtts://.")
    mqtt_tls_insecure: bool = Field(False, description="Skip the broker hostname check (testing).")
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT protocol version; 5 lets us raise the in-flight window."
    )
    mqtt_qos: Literal[0, 1] = Field(1, description="Subscription QoS; 1 for no loss.")
    mqtt_client: Literal["bulk", "paho"] = Field(
        "bulk",
        description=(
            "MQTT reader: bulk (fast; reads the socket in large chunks, relies on paho-mqtt "
            "internals, checked at start) or paho (paho's public manual-ack API, slower; also "
            "used when the check fails)."
        ),
    )
    mqtt_receive_maximum: int = Field(
        20000,
        ge=1,
        le=65535,
        description="MQTT 5 receive-maximum: unacknowledged messages the broker may send us.",
    )
    mqtt_session_expiry: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="Seconds the broker keeps our session (and queued messages) while we are away.",
    )
    mqtt_keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    mqtt_shared_group: str | None = Field(
        None,
        description="Subscribe as `$share/<group>/...` so N ingest workers split the stream.",
    )
    mqtt_reconnect_min: float = Field(0.5, gt=0, description="First reconnect delay (s).")
    mqtt_reconnect_max: float = Field(30.0, gt=0, description="Reconnect delay cap (s).")
    topic_prefix: str = Field("panel", description="Topics are `<prefix>/<panel>/<metric>`.")
    mosquitto_password_file: Path | None = Field(
        None,
        description="Mosquitto `password_file` that every `pelbiot device` change rewrites "
        "(with the ACL file; then reload Mosquitto with SIGHUP).",
    )
    mosquitto_acl_file: Path | None = Field(
        None, description="Mosquitto `acl_file` that every `pelbiot device` change rewrites."
    )
    embedded_broker_anonymous: Literal["until_devices", "never"] = Field(
        "until_devices",
        description="Embedded broker: `until_devices` lets clients without credentials connect "
        "until the first device is registered; `never` requires device credentials always "
        "(the default with `PELBIOT_ENV=production`; an explicit value wins).",
    )

    # --- storage ----------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="sqlite:///path or postgresql://user@host/db. Unset: SQLite at "
        "<data_dir>/pelbiot.db.",
    )
    data_dir: Path = Field(Path("data"), description="Where the default SQLite file lives.")
    db_statement_timeout_s: float = Field(
        60.0,
        ge=0,
        le=2_147_483,  # PostgreSQL's limit, INT_MAX milliseconds; also refuses inf
        description="PostgreSQL: cancel any statement running longer than this (s); 0 = no limit.",
    )
    raw_retention_days: int = Field(
        0, ge=0, description="Delete raw readings older than this many days; 0 keeps them all."
    )
    auto_create_panels: bool = Field(
        True, description="Create a panel on its first reading; off rejects unknown panels."
    )

    # --- ingest -----------------------------------------------------------------------------
    writer_queue_size: int = Field(
        100_000, ge=100, description="Bound of the writer queue, in messages."
    )
    writer_batch_max: int = Field(
        20_000, ge=1, description="Most readings committed in one transaction."
    )
    max_payload_bytes: int = Field(
        65_536, ge=64, description="Larger MQTT payloads are rejected as too_large."
    )
    future_tolerance_s: float = Field(
        300.0, ge=0, description="Readings stamped further in the future are rejected."
    )
    rejected_ring_size: int = Field(500, ge=1, description="Rejected messages kept for the API.")
    latest_max_skew_s: float = Field(
        5.0,
        ge=0,
        description="A reading stamped further ahead of when it is written (arrival plus "
        "queueing) is stored in history but "
        "never becomes the latest value (a fast device clock cannot freeze /latest).",
    )
    max_panels: int = Field(
        5_000, ge=1, description="Panels a site may have; past it, new panel ids are rejected."
    )
    max_metrics_per_panel: int = Field(
        200, ge=1, description="Metrics one panel may have; past it, new metrics are rejected."
    )
    max_series: int = Field(
        20_000,
        ge=1,
        description="(panel, metric) series a site may have; new ones past it are rejected.",
    )
    readings_max_points: int = Field(
        100_000,
        ge=1_000,
        description="Most points one /readings answer holds, all metrics together (raw pages "
        "are cut earlier, downsampled answers get wider buckets); at least twice "
        "readings_max_metrics.",
    )
    readings_max_metrics: int = Field(
        32, ge=1, le=1_000, description="Most metrics one /readings request may ask for."
    )

    # --- HTTP -------------------------------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(8000, ge=0, le=65535, description="HTTP port.")
    timezone: str = Field("Asia/Jakarta", description="Site time zone (IANA name).")

    live_max_rate_hz: float = Field(
        5.0, gt=0, le=100, description="Most live reading frames per panel per second."
    )
    live_client_queue: int = Field(
        256, ge=8, description="Frames a slow WebSocket client may lag before it is resynced."
    )
    live_session_recheck_s: float = Field(
        15.0,
        gt=0,
        description=(
            "Seconds between full re-checks of an open live feed's rights (session, account,"
            " key, visible panels); changes made through this process apply at once."
        ),
    )
    live_status_interval_s: float = Field(
        2.0, gt=0, description="Seconds between ingest status frames on the live feed."
    )

    # --- accounts and hardening (docs/security.md) --------------------------------------------
    access_token_ttl_s: int = Field(900, ge=60, le=86_400, description="Access token lifetime.")
    refresh_token_ttl_s: int = Field(
        14 * 86_400, ge=300, description="Refresh token (login session) lifetime."
    )
    password_min_length: int = Field(10, ge=8, le=128, description="Shortest password accepted.")
    password_expiry_days: int = Field(
        0, ge=0, description="Days before a password must be changed; 0 = never."
    )
    password_history: int = Field(
        5, ge=0, le=50, description="A new password may not repeat the last N."
    )
    password_hash_time_cost: int = Field(
        3, ge=1, le=20, description="argon2id passes per password hash (production: at least 2)."
    )
    password_hash_memory_kib: int = Field(
        65_536,
        ge=1024,
        le=4_194_304,
        description="argon2id memory per password hash in KiB (production: at least 19456).",
    )
    lockout_threshold: int = Field(
        10,
        ge=3,
        description="Consecutive wrong passwords from one address that lock that address out of "
        "the account (the owner elsewhere still logs in).",
    )
    lockout_minutes: int = Field(
        15, ge=1, description="How long an address stays locked out of an account."
    )
    login_backoff_after: int = Field(
        5, ge=1, description="Failed logins of one name from one address before back-off starts."
    )
    login_backoff_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="First back-off wait (s), doubled per further failure, capped at "
        "lockout_minutes; 0 = no back-off.",
    )
    login_attempts_per_address: int = Field(
        30, ge=1, description="Failed logins per address per 5 minutes before 429."
    )
    login_attempts_per_account: int = Field(
        10, ge=1, description="Login attempts per account from one address per minute before 429."
    )
    rate_limit_per_address: int = Field(
        1200, ge=1, description="API requests per address per minute (429 beyond)."
    )
    rate_limit_per_key: int = Field(
        12_000, ge=1, description="API requests per API key per minute (429 beyond)."
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (JSON list); empty = none.",
    )
    anonymous_read: bool = Field(
        False, description="Viewer rights without a login (wall displays); never publishing."
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Secure flag of session cookies; auto = when served over HTTPS."
    )

    redis_url: str | None = Field(
        None, description="Redis for multi-worker live fan-out (accepted; used from 0.2 on)."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"} or not parts.hostname:
            raise ValueError("expected mqtt://host[:port] or mqtts://host[:port]")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("expected sqlite:///path or postgresql://user@host/db")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "#+"):
            raise ValueError("must be a non-empty topic level without wildcards")
        return value

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.env == "production" and (
            len(self.secret_key) < 32
            or self.secret_key == DEV_SECRET
            # A long but repetitive value ("x" * 32) is no secret either.
            or len(set(self.secret_key)) < 10
        ):
            raise ValueError(
                "PELBIOT_SECRET_KEY must be a random value of at least 32 characters in "
                "production (not the development default); make one with "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        if self.env == "production" and (
            self.password_hash_time_cost < 2 or self.password_hash_memory_kib < 19_456
        ):
            raise ValueError(
                "password hashing below OWASP's argon2id minimum (2 passes, 19456 KiB) is for "
                "tests only, not production"
            )
        if self.env == "production" and "embedded_broker_anonymous" not in self.model_fields_set:
            # No open broker in production unless asked for (frozen model: set it directly).
            object.__setattr__(self, "embedded_broker_anonymous", "never")
        if self.mqtt_receive_maximum > self.writer_queue_size:
            raise ValueError(
                "PELBIOT_MQTT_RECEIVE_MAXIMUM must not exceed PELBIOT_WRITER_QUEUE_SIZE "
                "(the broker could then send more than the writer queue holds)"
            )
        if self.mqtt_reconnect_max < self.mqtt_reconnect_min:
            raise ValueError("mqtt_reconnect_max must be >= mqtt_reconnect_min")
        if self.readings_max_points < 2 * self.readings_max_metrics:
            # a downsampled answer gives each metric at least 2 buckets
            raise ValueError(
                "PELBIOT_READINGS_MAX_POINTS must be at least twice PELBIOT_READINGS_MAX_METRICS "
                f"(at least {2 * self.readings_max_metrics}): a downsampled answer gives each "
                "metric at least 2 points"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pelbiot.db').as_posix()}"


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation failures into one ConfigError naming each setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env_name = f"PELBIOT_{name.upper()}" if err["loc"] else "settings"
            problems.append(f"{env_name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
