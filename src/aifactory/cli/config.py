"""Where the CLI keeps the API address and token: a 0600 JSON file in the user's config dir."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8080"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("AIF_CONFIG_DIR"):
        return Path(env["AIF_CONFIG_DIR"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aifactory"


@dataclass
class CliConfig:
    url: str = DEFAULT_URL
    token: str | None = None


def server_url(host: str, port: int) -> str:
    """The address a CLI on the same machine uses for an `aif serve` listening on host:port."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a wildcard is reached on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def url_for_server(host: str, port: int, environ: Mapping[str, str] | None = None) -> str:
    """AIF_URL when set (a proxy, another name), else the local address of host:port."""
    env = os.environ if environ is None else environ
    return env.get("AIF_URL") or server_url(host, port)


def load(environ: Mapping[str, str] | None = None, fallback_url: str = DEFAULT_URL) -> CliConfig:
    """Stored config, with AIF_URL / AIF_TOKEN from the environment taking precedence.

    Args:
        environ: The environment (default: the process's).
        fallback_url: The API address when neither AIF_URL nor the stored config names one.
    """
    env = os.environ if environ is None else environ
    path = config_dir(env) / "config.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    return CliConfig(
        url=env.get("AIF_URL") or stored.get("url") or fallback_url,
        token=env.get("AIF_TOKEN") or stored.get("token"),
    )


def save(cfg: CliConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Write the config readable by its owner only (created 0600, never world-readable)."""
    directory = config_dir(environ)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": cfg.url, "token": cfg.token}, fh)
    os.chmod(path, 0o600)
    return path
