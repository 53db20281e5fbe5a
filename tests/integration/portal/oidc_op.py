"""A real OpenID Provider for the federated sign-in tests: ``oidc-provider@9`` under Node.js.

``tests/fixtures/oidc/op.mjs`` runs in ``test-output/op``, where npm installs the package once
(``scripts/services.sh`` does it before the suite). Without node or npm the tests are skipped with
the reason, except under ``CI=true`` where that fails. ``running_op`` waits for the provider's
"op up" line (its progress), never for a fixed time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
OP_DIR = ROOT / "test-output" / "op"
OP_SCRIPT = ROOT / "tests" / "fixtures" / "oidc" / "op.mjs"
PACKAGE = "oidc-provider@9"
CLIENT_ID, CLIENT_SECRET = "aif", "op-test-secret"
STARTUP_LINES = 50


@dataclass
class RunningOp:
    issuer: str
    claims_file: Path

    def set_claims(self, claims: dict[str, dict[str, Any]]) -> None:
        """What each login name's extra claims are from the next sign-in on."""
        self.claims_file.write_text(json.dumps(claims), encoding="utf-8")


def ensure_op() -> str | None:
    """Install oidc-provider once; returns why the provider cannot run, or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are needed to run the OpenID provider (apt-get install nodejs npm)"
    if (OP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return None
    OP_DIR.mkdir(parents=True, exist_ok=True)
    if not (OP_DIR / "package.json").exists():
        (OP_DIR / "package.json").write_text('{"name": "op", "private": true}\n')
    argv = [npm, "install", "--no-audit", "--no-fund", "--silent", PACKAGE]
    try:
        subprocess.run(argv, cwd=OP_DIR, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"npm install {PACKAGE} failed: {exc}"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"federated sign-in tests need the OpenID provider under CI: {reason}")
    pytest.skip(reason)


@contextmanager
def running_op(port: int, redirect_uri: str, claims_file: Path) -> Iterator[RunningOp]:
    """Start the provider on ``port`` for one client, and stop it afterwards."""
    reason = ensure_op()
    if reason is not None:
        skip_or_fail(reason)
    shutil.copyfile(OP_SCRIPT, OP_DIR / "op.mjs")
    claims_file.write_text("{}", encoding="utf-8")
    env = {
        **os.environ,
        "OP_PORT": str(port),
        "OP_CLIENT_ID": CLIENT_ID,
        "OP_CLIENT_SECRET": CLIENT_SECRET,
        "OP_REDIRECT_URI": redirect_uri,
        "OP_CLAIMS_FILE": str(claims_file),
    }
    node = shutil.which("node") or "node"
    proc = subprocess.Popen(
        [node, "op.mjs"],
        cwd=OP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    drain = threading.Thread(target=_drain, args=(proc,), daemon=True)
    try:
        _wait_until_up(proc)
        drain.start()
        yield RunningOp(f"http://127.0.0.1:{port}", claims_file)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if drain.is_alive():
            drain.join(timeout=10)  # the pipe ends with the process
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_until_up(proc: subprocess.Popen[str]) -> None:
    """Read the provider's output until it says "op up" (or it exits)."""
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line.rstrip())
        if line.strip() == "op up":
            return
        if len(seen) > STARTUP_LINES:
            break
    proc.kill()
    raise AssertionError("the OpenID provider did not start:\n" + "\n".join(seen[-20:]))


def _drain(proc: subprocess.Popen[str]) -> None:
    """Keep reading the provider's output so that a full pipe never blocks it."""
    assert proc.stdout is not None
    for _ in proc.stdout:
        pass
