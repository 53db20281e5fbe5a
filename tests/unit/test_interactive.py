"""Interactive sessions without a server: the launcher a session's job runs (against a stand-in
JupyterLab), its JupyterLab configuration, the job spec, and the proxy's header rules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from aifactory.api.routers import interactive as router
from aifactory.db.models import InteractiveSession
from aifactory.domain.serving import SessionSpec
from aifactory.interactive_launch import ANNOUNCE_PREFIX, CONFIG, main
from aifactory.portal.web import SESSION_COOKIE
from aifactory.services.interactive import launcher_script, session_job_spec

#: Stands in for ``python -m jupyterlab``: answers the status API once given the token, records
#: what it was started with, and exits 7 on SIGTERM.
FAKE_JUPYTERLAB = """
import http.server, os, signal, sys
from pathlib import Path

assert sys.argv[1].startswith("--config=") and Path(sys.argv[1][9:]).is_file()
Path("seen.txt").write_text(os.environ["HOME"] + "\\n" + os.environ["AIF_SESSION_BASE_URL"])
base, token = os.environ["AIF_SESSION_BASE_URL"], os.environ["AIF_SERVICE_TOKEN"]

class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == base + "api/status" and self.headers["Authorization"] == "token " + token
        self.send_response(200 if ok else 403)
        self.end_headers()

    def log_message(self, *args):
        pass

signal.signal(signal.SIGTERM, lambda *args: sys.exit(7))
address = (os.environ["AIF_SERVICE_HOST"], int(os.environ["AIF_SERVICE_PORT"]))
http.server.HTTPServer(address, Status).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.timeout(60)
def test_the_launcher_announces_jupyterlab_once_it_answers_and_passes_sigterm_on(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "fake" / "jupyterlab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_JUPYTERLAB)
    script = tmp_path / "session.sh"
    script.write_text(launcher_script())  # the job's script, as the platform sends it
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(tmp_path / "fake"),
        "HOME": str(tmp_path / "no-such-home"),
        "AIF_SERVICE_HOST": "127.0.0.1",
        "AIF_SERVICE_PORT": str(port),
        "AIF_SERVICE_TOKEN": "t0ken",
    }
    launcher = subprocess.Popen(
        [sys.executable, str(script), "jupyter", "/sessions/5/"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    line = launcher.stdout.readline()  # waits on the launcher's progress, not on a clock
    assert line == f"{ANNOUNCE_PREFIX}http://127.0.0.1:{port}\n"
    home, base = (tmp_path / "seen.txt").read_text().splitlines()
    assert (home, base) == (str(tmp_path), "/sessions/5/")  # no usable HOME: the job's directory
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=30) == 7
    launcher.stdout.close()


@pytest.mark.parametrize(
    "argv", [[], ["vnc", "/sessions/1/"], ["jupyter", "/sessions/1"], ["shell", "/x/1/"]]
)
def test_the_launcher_refuses_arguments_it_was_not_made_for(argv: list[str]) -> None:
    assert main(argv) == 2


def test_jupyterlab_takes_the_token_out_of_its_environment_and_off_its_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = pytest.importorskip("traitlets.config").Config()
    for name, value in [("HOST", "127.0.0.1"), ("PORT", "20001"), ("TOKEN", "t0ken")]:
        monkeypatch.setenv(f"AIF_SERVICE_{name}", value)
    monkeypatch.setenv("AIF_SESSION_BASE_URL", "/sessions/9/")
    exec(CONFIG, {"get_config": lambda: config})
    assert config.IdentityProvider.token == "t0ken" and "AIF_SERVICE_TOKEN" not in os.environ
    assert (config.ServerApp.ip, config.ServerApp.port) == ("127.0.0.1", 20001)
    assert config.ServerApp.base_url == "/sessions/9/" and config.ServerApp.port_retries == 0
    hook = config.ServerApp.tornado_settings["page_config_hook"]
    page = hook(None, {"token": "t0ken", "disabledExtensions": {}})
    assert page["token"] == ""
    assert page["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}


def test_a_sessions_job_carries_only_platform_values_and_validated_ones() -> None:
    row = InteractiveSession(id=12, token="t0ken")
    spec = SessionSpec(project="EHPC-1", kind="shell", gpus=2, time=5400, cpus=8)
    job = session_job_spec(row, spec, 23456)
    assert job.script == launcher_script() and job.script.startswith("#!/usr/bin/env python3\n")
    assert job.args == ["shell", "/sessions/12/"]
    assert job.environment == {
        "AIF_SERVICE_HOST": "127.0.0.1",
        "AIF_SERVICE_PORT": "23456",
        "AIF_SERVICE_TOKEN": "t0ken",
        "AIF_SESSION_ID": "12",
    }
    assert (job.resources.gpus_per_node, job.resources.time_limit) == (2, 5400)
    assert (job.resources.cpus, job.retry.max_attempts, job.name) == (8, 1, "session-12")


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "cross"),
    [
        ({"host": "aif.eu", "origin": "https://aif.eu"}, False),
        ({"host": "aif.eu", "origin": "https://evil.example"}, True),
        ({"host": "aif.eu", "origin": "null"}, True),
        ({"host": "aif.eu", "sec-fetch-site": "cross-site"}, True),
        ({"host": "aif.eu", "sec-fetch-site": "same-origin"}, False),
        ({"host": "aif.eu"}, False),  # not a browser's cross-site request
    ],
)
def test_a_cookie_request_from_another_site_is_told_apart(
    headers: dict[str, str], cross: bool
) -> None:
    assert router._cross_site(_request(headers)) is cross


def test_session_pages_get_our_policy_whatever_case_the_upstream_used() -> None:
    response: Any = Response(b"")
    response.raw_headers = [
        (b"Content-Security-Policy", b"frame-ancestors 'self'"),
        (b"Content-Type", b"text/html"),
    ]
    router._session_headers(response)
    assert response.raw_headers == [
        (b"content-type", b"text/html"),
        (b"content-security-policy", router.SESSION_CSP.encode()),
        (b"x-frame-options", b"SAMEORIGIN"),
    ]


def test_the_proxy_reads_the_portals_own_sign_in_cookie() -> None:
    assert router.PORTAL_COOKIE == SESSION_COOKIE
