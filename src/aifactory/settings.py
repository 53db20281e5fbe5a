"""Settings, read once at an entry point and injected; nothing reads the environment at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "aifactory"


class Settings(BaseSettings):
    """Runtime settings; every field can be set as ``AIF_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AIF_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite under data_dir"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl_days: int = Field(default=90, ge=1, le=3650)
    federation_file: Path | None = Field(
        default=None, description="federation YAML; default is the shipped one"
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'aifactory.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
