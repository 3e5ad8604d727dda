"""Configuration from the environment or ``.env`` (DESIGN §9), validated once, failing fast."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from finance.proration import DowngradeTiming, ProrationRule


class ConfigError(Exception):
    """Configuration that cannot work; the message names the variable and what is wrong."""


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "deskbooks"


class Settings(BaseSettings):
    """Every knob deskbooks reads. Secrets are ``SecretStr`` and never printed."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default_factory=default_data_dir, alias="DESKBOOKS_DATA_DIR")
    database_url: str | None = Field(default=None, alias="DESKBOOKS_DATABASE_URL")

    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    llm_model: str | None = Field(default=None, alias="DESKBOOKS_LLM_MODEL")

    proration_rule: ProrationRule = Field(default="actual_days", alias="DESKBOOKS_PRORATION_RULE")
    downgrade_timing: DowngradeTiming = Field(
        default="period_end", alias="DESKBOOKS_DOWNGRADE_TIMING"
    )
    invoice_prefix: str = Field(default="INV", alias="DESKBOOKS_INVOICE_PREFIX")
    capitalization_threshold_cents: int = Field(
        default=250_000, alias="DESKBOOKS_CAPITALIZATION_THRESHOLD_CENTS", ge=0
    )
    knowledge_dir: Path | None = Field(default=None, alias="DESKBOOKS_KNOWLEDGE_DIR")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="DESKBOOKS_LOG_LEVEL"
    )
    # Slack surfaces: where alerts and approval requests go, which hosts files may come from.
    alert_channel: str | None = Field(default=None, alias="DESKBOOKS_ALERT_CHANNEL")
    approvals_channel: str | None = Field(default=None, alias="DESKBOOKS_APPROVALS_CHANNEL")
    slack_file_hosts: str = Field(default="files.slack.com", alias="DESKBOOKS_SLACK_FILE_HOSTS")
    # Reminder e-mail (dunning): smtp://user:password@host:port or smtps://... ; none = queue only
    smtp_url: SecretStr | None = Field(default=None, alias="DESKBOOKS_SMTP_URL")
    mail_from: str = Field(default="billing@deskbooks.local", alias="DESKBOOKS_MAIL_FROM")
    hook_secret: SecretStr | None = Field(default=None, alias="DESKBOOKS_HOOK_SECRET")
    max_upload_mb: int = Field(default=20, ge=1, le=100, alias="DESKBOOKS_MAX_UPLOAD_MB")
    # Rules knowledge base and expense history (finance.kb): a ChromaDB server when set
    # (e.g. http://chroma:8000), else an embedded store under the data dir.
    chroma_url: str | None = Field(default=None, alias="DESKBOOKS_CHROMA_URL")
    embeddings: Literal["local", "openai"] = Field(default="local", alias="DESKBOOKS_EMBEDDINGS")
    embedding_model: str | None = Field(default=None, alias="DESKBOOKS_EMBEDDING_MODEL")

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        scheme = value.split(":", 1)[0]
        if not scheme.startswith(("sqlite", "postgres")):
            raise ValueError(
                "must be a sqlite:/// or postgresql:// URL "
                "(e.g. postgresql+psycopg://user@127.0.0.1:5432/deskbooks)"
            )
        if scheme in ("postgresql", "postgres"):
            # plain postgresql:// means psycopg2 to SQLAlchemy; we ship psycopg 3.
            value = "postgresql+psycopg" + value[len(scheme) :]
        return value

    @field_validator("slack_api_url", "openai_base_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None if value == "" else value
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"

    @field_validator("chroma_url")
    @classmethod
    def _check_chroma_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (e.g. http://127.0.0.1:8000)")
        return value

    @field_validator("invoice_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value.isalnum() or len(value) > 8:
            raise ValueError("must be 1-8 letters or digits (e.g. INV)")
        return value.upper()

    @model_validator(mode="after")
    def _llm_needs_model(self) -> Settings:
        if (self.openai_base_url or self.openai_api_key) and not self.llm_model:
            raise ValueError(
                "DESKBOOKS_LLM_MODEL must name the model when OPENAI_BASE_URL or "
                "OPENAI_API_KEY is set"
            )
        return self

    @model_validator(mode="after")
    def _openai_embeddings_need_endpoint(self) -> Settings:
        if self.embeddings == "openai" and not (self.openai_base_url or self.openai_api_key):
            raise ValueError(
                "DESKBOOKS_EMBEDDINGS=openai needs OPENAI_BASE_URL or OPENAI_API_KEY"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        """repr() and str() (log lines, tracebacks) mask the password of the database URL."""
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                value = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", value)
            yield name, value

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'deskbooks.db'}"

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_model and (self.openai_base_url or self.openai_api_key))

    @property
    def knowledge_path(self) -> Path:
        return self.knowledge_dir or default_knowledge_dir()


def default_knowledge_dir() -> Path:
    """``knowledge/`` at the project root (next to the ``finance`` package)."""
    return Path(__file__).resolve().parent.parent / "knowledge"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raise ``ConfigError`` with a readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{loc}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
