"""One settings object per process, read from the environment (and `.env`).

Every setting of every process lives here, so `.env.example` can document them
in one place. Secrets have no usable default outside development: `Settings`
refuses to start with a placeholder secret when `ENVIRONMENT=production`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "change-me"
# `livekit-server --dev`'s secret; `./chat run` replaces it with a strong one.
DEFAULT_LIVEKIT_SECRET = "secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str = ""

    # Broker, as the services and the API reach it (plain TCP).
    mqtt_host: str = "127.0.0.1"
    mqtt_tcp_port: int = 1884
    mqtt_ws_port: int = 9001
    # The devices' WebSocket endpoint (ws_gateway/): WebSocket in, plain TCP to
    # the broker out, because Mosquitto's own WebSocket listener polls every
    # connection on each turn of its loop (docs/load.md). 0: devices are sent
    # to the broker's WebSocket listener (MQTT_WS_PORT) instead.
    mqtt_ws_gateway_port: int = Field(default=9002, ge=0)
    mqtt_ws_gateway_bind: str = "127.0.0.1"
    # Processes sharing the gateway's port: more cores, and room for more
    # descriptors (two per device connection, in the process that holds it).
    mqtt_ws_gateway_workers: int = Field(default=1, ge=1)
    # What devices are told (they may reach the broker through a proxy).
    public_mqtt_host: str = "127.0.0.1"
    public_ws_url: str = ""
    mqtt_service_username: str = "svc"
    mqtt_service_password: str = DEV_PLACEHOLDER
    mqtt_admin_username: str = "provisioner"
    mqtt_admin_password: str = DEV_PLACEHOLDER
    instance: str = "1"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The reverse proxy's addresses: the API takes client addresses (for the
    # login and registration limits) from their X-Forwarded-For only.
    forwarded_allow_ips: str = "127.0.0.1"
    access_token_ttl_days: int = 30

    # Media limits per kind, in bytes.
    media_dir: Path | None = None
    media_max_image_bytes: int = 10 * 1024 * 1024
    media_max_audio_bytes: int = 20 * 1024 * 1024
    media_max_file_bytes: int = 50 * 1024 * 1024

    # Persistence service tuning.
    store_batch_max: int = Field(default=256, ge=1)
    # A message still undelivered this long after its commit is taken to be
    # orphaned (its process died) and delivered by the sweep.
    redelivery_after_seconds: float = 10.0

    # Calls. LiveKit defaults are those of `livekit-server --dev`.
    livekit_url: str = "ws://127.0.0.1:7880"
    # Where the services reach LiveKit's server API (RoomService, Egress); by
    # default the same host as `livekit_url`, over HTTP.
    livekit_api_url: str = ""
    livekit_api_key: str = "devkey"
    livekit_api_secret: str = DEFAULT_LIVEKIT_SECRET
    livekit_token_ttl_seconds: int = Field(default=300, ge=30)
    call_ring_timeout_seconds: float = Field(default=45.0, gt=0)
    # An answered call that the callee has not joined in LiveKit after this long
    # is ended (0 turns the check off, e.g. when no webhooks are configured).
    call_join_grace_seconds: float = Field(default=30.0, ge=0)
    # How often callsig looks in the database for ring deadlines it does not
    # hold itself (another instance died); each instance schedules its own.
    call_sweep_seconds: float = Field(default=5.0, gt=0)
    # Server-side recording (LiveKit Egress): off unless an output is set.
    recording_enabled: bool = False
    recording_filepath: str = "recordings/{room_name}-{time}.mp4"

    # Push (Expo). The API's base URL (a test server in the tests), and the
    # access token of Expo's "enhanced security" if the project turned it on.
    expo_api_url: str = "https://exp.host"
    expo_access_token: str = ""
    push_receipt_check_seconds: float = Field(default=900.0, gt=0)
    # Messages of one conversation within this window make one push ("3 new messages").
    push_message_window_seconds: float = Field(default=1.0, ge=0)
    # At most this many message pushes per user per minute (calls are never held back).
    push_user_per_minute: int = Field(default=20, ge=1)

    # Presence: a user who went offline is announced so only after this long
    # without coming back (a flapping mobile connection announces nothing).
    presence_offline_debounce_seconds: float = Field(default=5.0, ge=0)

    # Live support (docs/support.md). A waiting ticket rises one priority level
    # per aging step; an operator disconnected past the grace loses their chats;
    # the first answer is due within the SLA of the ticket's priority.
    support_aging_seconds: float = Field(default=300.0, gt=0)
    support_operator_grace_seconds: float = Field(default=30.0, ge=0)
    support_sweep_seconds: float = Field(default=2.0, gt=0)
    support_sla_urgent_seconds: float = Field(default=60.0, gt=0)
    support_sla_high_seconds: float = Field(default=120.0, gt=0)
    support_sla_normal_seconds: float = Field(default=300.0, gt=0)
    support_sla_low_seconds: float = Field(default=600.0, gt=0)
    support_default_capacity: int = Field(default=3, ge=1)

    # Limits (docs/operations.md, "Limits"). Messages per user: a token bucket
    # in each persistence instance and in the API (HTTP sends). Shared
    # subscriptions split a user's sends between instances, so N persistence
    # instances admit up to N times the rate; the burst covers a reconnecting
    # outbox re-sending what it holds.
    message_rate_per_second: int = Field(default=10, ge=1)
    message_rate_burst: int = Field(default=50, ge=1)
    # Logins per client address and username (brute force), registrations per
    # client address; both per API process.
    login_attempts_per_minute: int = Field(default=10, ge=1)
    registrations_per_hour: int = Field(default=20, ge=1)
    # The broker's connection cap per listener (-1: no cap).
    mqtt_max_connections: int = Field(default=20000, ge=-1)

    # Broker TLS (docs/deploy.md): with a certificate and key, the broker also
    # listens with TLS on these ports (MQTT over TLS, secure WebSocket).
    mqtt_tls_certfile: str = ""
    mqtt_tls_keyfile: str = ""
    mqtt_tls_cafile: str = ""
    mqtt_tls_tcp_port: int = 8883
    mqtt_tls_ws_port: int = 8443

    # Observability (docs/operations.md). Each service serves Prometheus
    # metrics on this port (0: not served; the API serves /metrics on its
    # own port) and publishes a summary on svc/<name>/<instance>/metrics.
    metrics_port: int = Field(default=0, ge=0)
    metrics_publish_seconds: float = Field(default=10.0, gt=0)
    # "json": one JSON object per line, with message, call and ticket ids.
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("mqtt_service_password", "mqtt_admin_password", "livekit_api_secret"):
                if getattr(self, name) in (DEV_PLACEHOLDER, DEFAULT_LIVEKIT_SECRET):
                    raise ValueError(f"{name.upper()} must be set in production")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chat.db'}"

    @property
    def effective_media_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"

    @property
    def effective_livekit_api_url(self) -> str:
        if self.livekit_api_url:
            return self.livekit_api_url
        return self.livekit_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

    @property
    def effective_ws_url(self) -> str:
        port = self.mqtt_ws_gateway_port or self.mqtt_ws_port
        return self.public_ws_url or f"ws://{self.public_mqtt_host}:{port}/mqtt"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
