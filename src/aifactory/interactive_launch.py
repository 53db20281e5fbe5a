"""The program an interactive session's job runs: JupyterLab, announced once it answers.

Standard library only, and self-contained: the platform sends this file's text as the job's
``script`` (after a ``#!/usr/bin/env python3`` line), so a site needs Python with JupyterLab on
its compute nodes, not the control plane's package. It takes two arguments, the kind
(``jupyter`` or ``shell``) and the base URL (``/sessions/<id>/``), and the platform's
``AIF_SERVICE_HOST``, ``AIF_SERVICE_PORT`` and ``AIF_SERVICE_TOKEN`` from the environment.

1. JupyterLab starts as a child, configured by a file written here (constant text that reads
   the environment; no value is ever pasted into code or a command line): it listens on the
   given host and port only, under the base URL, and requires the token, which it takes out of
   its environment so kernels and terminals never see it. Pages get no token (the proxy adds
   it to every request), and JupyterLab neither fetches nor offers news or update checks.
2. Once ``GET <base>api/status`` answers with the token, a ``shell`` session gets a terminal
   (``terminals/1``) and a default workspace that opens it; then the line
   ``AIF_SERVICE_URL=http://HOST:PORT`` goes to standard output, where the control plane looks.
3. It waits for JupyterLab and exits with its code. SIGTERM, SIGINT and SIGHUP (a cancel, the
   time limit) are passed on to it as SIGTERM; it shuts its kernels down and exits.

A home directory that does not exist or cannot be written (a site login made without one) is
replaced by the working directory, the job's own, for JupyterLab's runtime and settings files.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ("jupyter", "shell")
ANNOUNCE_PREFIX = "AIF_SERVICE_URL="  # what the control plane looks for in the job's output
POLL_S = 0.2
CHECK_TIMEOUT_S = 2.0
#: Read by JupyterLab (a traitlets config file is Python); constant, it reads the environment.
CONFIG = """\
import os

c = get_config()  # noqa: F821 (defined by traitlets for config files)
c.ServerApp.ip = os.environ["AIF_SERVICE_HOST"]
c.ServerApp.port = int(os.environ["AIF_SERVICE_PORT"])
c.ServerApp.port_retries = 0
c.ServerApp.base_url = os.environ["AIF_SESSION_BASE_URL"]
c.ServerApp.root_dir = os.getcwd()
c.ServerApp.open_browser = False
# Requests come from the control plane's proxy with the node's address as Host; the token
# (which the proxy alone holds) is what admits them.
c.ServerApp.allow_remote_access = True
c.IdentityProvider.token = os.environ.pop("AIF_SERVICE_TOKEN")
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"


ANNOUNCEMENTS = "@jupyterlab/apputils-extension:announcements"


def _page_config(handler, page_config):
    page_config["token"] = ""  # the browser never holds the token; the proxy adds it
    disabled = page_config.setdefault("disabledExtensions", {})  # no news prompt either
    if isinstance(disabled, dict):
        disabled[ANNOUNCEMENTS] = True
    elif ANNOUNCEMENTS not in disabled:
        disabled.append(ANNOUNCEMENTS)
    return page_config


c.ServerApp.tornado_settings = {"page_config_hook": _page_config}
"""
#: The default workspace of a ``shell`` session: one terminal, the side bar closed.
SHELL_WORKSPACE: dict[str, Any] = {
    "data": {
        "layout-restorer:data": {
            "main": {
                "dock": {"type": "tab-area", "currentIndex": 0, "widgets": ["terminal:1"]},
                "current": "terminal:1",
            },
            "left": {"collapsed": True, "visible": True, "widgets": ["filebrowser"]},
            "right": {"collapsed": True, "visible": True, "widgets": []},
        },
        "terminal:1": {"data": {"name": "1"}},
    },
    "metadata": {"id": "default"},
}


def main(argv: list[str]) -> int:
    """Run the session; the exit status is JupyterLab's (2 for bad arguments)."""
    if len(argv) != 2 or argv[0] not in KINDS or not _base_ok(argv[1]):
        print("usage: interactive_launch (jupyter|shell) /sessions/<id>/", file=sys.stderr)
        return 2
    kind, base = argv
    try:
        host, port = os.environ["AIF_SERVICE_HOST"], int(os.environ["AIF_SERVICE_PORT"])
        token = os.environ["AIF_SERVICE_TOKEN"]
    except (KeyError, ValueError) as exc:
        print(f"interactive_launch: AIF_SERVICE_* missing or wrong: {exc!r}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="aif-session-"))  # 0700: this user's only
    try:
        config = workdir / "jupyter_aif_config.py"
        config.write_text(CONFIG, encoding="utf-8")
        child = subprocess.Popen(  # noqa: S603 (fixed argv: this interpreter, a module, a path)
            [sys.executable, "-m", "jupyterlab", f"--config={config}"],
            env=_environment(base),
        )
        _forward_signals(child)
        if _wait_until_answering(child, host, port, base, token):
            if kind == "shell":
                _open_terminal(host, port, base, token)
            print(f"{ANNOUNCE_PREFIX}http://{_announced(host)}:{port}", flush=True)
        return child.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _base_ok(base: str) -> bool:
    parts = base.split("/")
    return len(parts) == 4 and parts[:2] == ["", "sessions"] and parts[2].isdigit() and not parts[3]


def _environment(base: str) -> dict[str, str]:
    env = dict(os.environ, AIF_SESSION_BASE_URL=base, PYTHONUNBUFFERED="1")
    home = env.get("HOME", "")
    if not (home and os.path.isdir(home) and os.access(home, os.W_OK | os.X_OK)):
        env["HOME"] = os.getcwd()
    return env


def _forward_signals(child: subprocess.Popen[bytes]) -> None:
    def forward(signum: int, frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)


def _wait_until_answering(
    child: subprocess.Popen[bytes], host: str, port: int, base: str, token: str
) -> bool:
    """Poll the status API until it answers 200; False if JupyterLab exits first."""
    while child.poll() is None:
        try:
            status, _ = _request(host, port, "GET", base + "api/status", token)
            if status == 200:
                return True
        except OSError:
            pass  # not listening yet
        time.sleep(POLL_S)
    return False


def _open_terminal(host: str, port: int, base: str, token: str) -> None:
    """Terminal ``1`` and a default workspace showing it (a failure only leaves the launcher)."""
    try:
        _request(host, port, "POST", base + "api/terminals", token, {"name": "1"})
        path = base + "lab/api/workspaces/default"
        status, body = _request(host, port, "PUT", path, token, SHELL_WORKSPACE)
        if status >= 300:
            print(
                f"interactive_launch: workspace not set: {status} {body[:200]!r}", file=sys.stderr
            )
    except OSError as exc:
        print(f"interactive_launch: no terminal opened: {exc!r}", file=sys.stderr)


def _request(
    host: str, port: int, method: str, path: str, token: str, body: Any = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=CHECK_TIMEOUT_S)
    try:
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _announced(host: str) -> str:
    """The address to give the control plane: this node's name when listening everywhere."""
    return socket.getfqdn() if host in ("", "0.0.0.0", "::") else host  # noqa: S104


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
