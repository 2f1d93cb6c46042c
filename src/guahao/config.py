"""Settings from GUAHAO_* environment variables (see .env.example)."""
from __future__ import annotations

import base64
import ipaddress
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development-only key material. Outside `development` these values are refused so that a
# production deployment cannot start with keys everybody can read in the repository.
DEV_DATA_KEY = base64.b64encode(b"guahao-development-data-key-0001").decode()
DEV_INDEX_KEY = base64.b64encode(b"guahao-development-index-key-001").decode()
DEV_SECRET = "dev-secret-change-me"
PLACEHOLDERS = {DEV_DATA_KEY, DEV_INDEX_KEY, DEV_SECRET, "", "changeme", "change-me"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUAHAO_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./guahao.db"
    db_pool_size: int = 5
    # PostgreSQL: a statement (or a connection that stopped answering) gives up after this
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    redis_url: str | None = None
    # AES-256-GCM key for personal data at rest and HMAC key for lookup hashes (base64, 32 bytes)
    data_key: str = DEV_DATA_KEY
    index_key: str = DEV_INDEX_KEY
    # keyrings for online rotation, "kid:base64,..." (docs/KEYS.md); empty: the key above as kid k0
    data_keys: str = ""
    data_key_current: str = ""
    index_keys: str = ""
    index_key_current: str = ""
    # keys the HMAC of session tokens (and, later, the pages' CSRF tokens): see core/signing.py.
    # Changing it signs every user out.
    secret_key: str = DEV_SECRET
    # SMS: "console" prints messages, login codes included (development only); "recording"
    # keeps them in memory (tests); "none" sends nothing (login by SMS answers 503) until a
    # real gateway is configured. Production refuses console and recording.
    sms_provider: Literal["console", "recording", "none"] = "console"
    # identity verification: "sandbox" decides by the token's prefix (see README, refused in
    # production); "none" answers 503 identity_check_unavailable.
    face_check_provider: Literal["sandbox", "none"] = "sandbox"
    # /docs and /openapi.json, /metrics: None = on, except in production (where a reverse proxy
    # or a scrape-only listener should decide who sees them)
    expose_docs: bool | None = None
    expose_metrics: bool | None = None
    # the addresses (CIDR) of our reverse proxies / load balancers: X-Forwarded-For and
    # X-Forwarded-Proto are believed only from these. Comma-separated in the environment.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    sms_code_ttl_seconds: int = 300
    sms_code_max_attempts: int = 5
    # maintenance mode while this file exists (a deploy's switch; docs/OPERATIONS.md)
    maintenance_file: str = ""
    # requests in flight per process and route class before new ones get 503 + Retry-After
    # (core/admission.py); a class left out is unlimited
    admission_limits: str = "hold=2000,api=1000,page=1000,staff=300"
    # new hold requests (booking/router.py _limit_holds): per account and per patient, and per
    # client address (loose: carrier NAT puts many phones behind one address)
    hold_limit_per_account: str = "20/minute;100/hour"
    hold_limit_per_address: str = "600/minute"
    # a hold refused by the budget in front of FastAPI is answered this much later (at most
    # its Retry-After): a tarpit, so a bot's keep-alive connections cost sleeping coroutines,
    # not CPU the other patients' holds need (booking/budget.py); 0 answers at once
    hold_refusal_delay_ms: int = 1000
    sms_send_limit_per_number: str = "1/minute;5/hour;10/day"
    sms_send_limit_per_client: str = "20/hour"
    session_ttl_hours: int = 24 * 30
    # staff login lockout (per username, across addresses and processes; staff/lockout.py)
    staff_login_max_failures: int = 5
    staff_login_window_minutes: int = 15
    staff_login_lock_minutes: int = 15
    max_patients_per_account: int = 5
    # payments: "paysim" = the sandbox process (`guahao paysim`), "fake" = in-memory (tests), "none"
    payment_provider: Literal["paysim", "fake", "none"] = "paysim"
    paysim_url: str = "http://127.0.0.1:8100"
    paysim_key: str = "paysim-dev-key"  # HMAC key shared with the sandbox
    payment_timeout_seconds: float = 5.0
    payment_notify_base_url: str | None = None  # how the provider reaches us; default base_url
    # `guahao serve` starts the sandbox as a child process on the embedded default
    paysim_embedded: bool = True
    # the HIS simulator (`guahao his-sim`): `serve` starts it on the embedded default when a
    # hospital's HIS connection points at his_sim_url (the demo's synced and realtime hospitals)
    his_sim_url: str = "http://127.0.0.1:8200"
    his_sim_key: str = "his-sim-dev-key"  # its master key (GUAHAO_HIS_SIM_KEY, as `guahao his-sim` reads it)
    his_sim_db_path: str = "./his-sim.db"
    his_sim_embedded: bool = True
    # realtime holds: how many times an unknown lock outcome (timeout, lost answer) is asked
    # about (`get_order`) before the lock is released through the outbox and the patient is
    # told his_unavailable. The availability cache is per hospital: its connection's cache_ms.
    his_lock_resolve_tries: int = Field(3, ge=1, le=10)
    default_timezone: str = "Asia/Shanghai"
    run_jobs_in_process: bool = True
    # job workers (guahao.jobs.runner)
    job_lease_seconds: float = 60  # a dead worker's job runs again this long after its last heartbeat
    job_max_attempts: int = 8
    job_poll_seconds: float = 0.5
    job_concurrency: int = 4
    job_timeout_seconds: float = 300  # per handler run
    job_plugins: str = ""  # extra handler modules, comma-separated (GUAHAO_JOB_PLUGINS)
    # retention (days; guahao.ops.retention purges hourly, in batches of retention_batch rows)
    retention_outbox_done_days: int = Field(default=30, ge=1)  # finished messages; dead letters stay
    retention_idempotency_days: int = Field(default=7, ge=1)  # far longer than any client retries
    retention_sms_code_days: int = Field(default=1, ge=1)  # after the code expired
    retention_session_days: int = Field(default=30, ge=1)  # after the session expired or was revoked
    retention_notification_days: int = Field(default=180, ge=1)  # sent_messages, the SMS log
    retention_batch: int = Field(default=500, ge=1, le=10_000)
    log_json: bool = False
    log_file: str | None = None  # also append log lines here (used by the privacy test)
    base_url: str = "http://127.0.0.1:8000"

    @field_validator("data_key", "index_key")
    @classmethod
    def _key_is_32_bytes(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ValueError("must be base64") from exc
        if len(raw) != 32:
            raise ValueError("must decode to 32 bytes")
        return value

    @field_validator("expose_docs", "expose_metrics", mode="before")
    @classmethod
    def _empty_means_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"not an IP address or CIDR network: {item!r}") from exc
        return value

    @model_validator(mode="after")
    def _no_placeholders_outside_development(self) -> Settings:
        if self.env != "development":
            bad = [n for n in ("data_key", "index_key", "secret_key") if getattr(self, n) in PLACEHOLDERS
                   and not getattr(self, n + "s", "")]  # a keyring replaces the single key
            if bad:
                raise ValueError(f"placeholder secrets refused in {self.env}: {', '.join(bad)}")
        refused = unsafe_providers(self)
        if refused:
            raise ValueError(f"refused in {self.env}: " + "; ".join(refused))
        return self

    @property
    def docs_enabled(self) -> bool:
        return self.expose_docs if self.expose_docs is not None else self.env != "production"

    @property
    def metrics_enabled(self) -> bool:
        return self.expose_metrics if self.expose_metrics is not None else self.env != "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def unsafe_providers(settings: Settings) -> list[str]:
    """Development stand-ins this environment must not run with, each with the fix.

    `test` (the test suite) may use the in-memory and sandbox providers it needs, but not the
    console SMS provider: it prints login codes to the terminal and no test reads them there."""
    problems: list[str] = []
    if settings.env == "development":
        return problems
    if settings.sms_provider == "console":
        problems.append("GUAHAO_SMS_PROVIDER=console prints login codes to the terminal "
                        "(set a real gateway, or none to turn SMS login off)")
    if settings.env != "production":
        return problems
    if settings.sms_provider == "recording":
        problems.append("GUAHAO_SMS_PROVIDER=recording keeps messages in memory and sends none (tests only)")
    if settings.payment_provider == "fake":
        problems.append("GUAHAO_PAYMENT_PROVIDER=fake is the in-memory test provider")
    if settings.face_check_provider == "sandbox":
        problems.append("GUAHAO_FACE_CHECK_PROVIDER=sandbox passes any token starting with 'pass' "
                        "(set a real provider, or none to turn identity verification off)")
    return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
