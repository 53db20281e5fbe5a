"""Accessibility checks of a page in the browser with axe-core (the npm package, pinned).

``assert_accessible(page, name)`` injects axe-core into a Playwright page, runs it, writes the
whole result to ``test-output/axe/<name>.json`` and fails listing every serious or critical
violation (rule, what it asks for, the offending elements). axe-core is installed once into
``test-output/axe`` by npm (``scripts/services.sh`` does it before the suite); where it is missing
and cannot be installed the check is skipped, except under ``CI=true`` where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

AXE_VERSION = "4.14.1"
AXE_DIR = Path(__file__).resolve().parents[3] / "test-output" / "axe"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
#: WCAG 2.1 A/AA rules and axe's best practices (landmarks, heading order, region).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def _installed_version() -> str | None:
    package = AXE_JS.parent / "package.json"
    if not package.exists():
        return None
    return str(json.loads(package.read_text()).get("version"))


def ensure_axe() -> str | None:
    """Install the pinned axe-core once; returns why it is unavailable, or None."""
    if AXE_JS.exists() and _installed_version() == AXE_VERSION:
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so axe-core cannot be installed"
    AXE_DIR.mkdir(parents=True, exist_ok=True)
    argv = [npm, "install", "--no-audit", "--no-fund", "--silent", f"axe-core@{AXE_VERSION}"]
    try:
        subprocess.run(argv, cwd=AXE_DIR, check=True, capture_output=True, timeout=180)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"npm install axe-core@{AXE_VERSION} failed: {exc}"
    return None if AXE_JS.exists() else f"axe-core@{AXE_VERSION} not found after npm install"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"accessibility checks need axe-core under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _describe(violation: dict[str, Any]) -> str:
    targets = [" ".join(map(str, node.get("target", []))) for node in violation["nodes"]]
    shown = "; ".join(targets[:8]) + (f"; … {len(targets) - 8} more" if len(targets) > 8 else "")
    return f"- {violation['id']} ({violation['impact']}): {violation['help']} -> {shown}"


def run_axe(page: Any) -> dict[str, Any]:
    """axe's whole result for the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol: the portal's CSP (no inline script) allows it
        page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;0")
    options = {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]}
    result: dict[str, Any] = page.evaluate(
        "async (options) => await window.axe.run(document, options)", options
    )
    return result


def assert_accessible(page: Any, name: str) -> None:
    """Fail listing every serious or critical axe violation on the page; keeps the full report."""
    reason = ensure_axe()
    if reason is not None:
        _skip_or_fail(reason)
    result = run_axe(page)
    AXE_DIR.mkdir(parents=True, exist_ok=True)
    (AXE_DIR / f"{name}.json").write_text(json.dumps(result, indent=1))
    blocking = [v for v in result["violations"] if v.get("impact") in BLOCKING]
    if blocking:
        lines = "\n".join(_describe(v) for v in blocking)
        pytest.fail(f"accessibility violations on {name} ({page.url}):\n{lines}", pytrace=False)
