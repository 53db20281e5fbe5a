"""The example training job's loss curve, live: through `aif serve`, the API, `aif` and the page.

A tiny run of examples/train_gpt/train.py (40 steps, a few seconds after importing torch) is
submitted as a user would; while it runs the metrics API already has points, and at its end
every step it printed, with finite losses. The job page draws the curve as SVG (no JavaScript
needed); with Debian's chromium present, screenshots at 1280 and 390 px go to
test-output/screenshots/metrics-job-<width>.png.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.testing.serving import Federation, served_federation

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
STEPS = 40
SPEC = f"""name: tiny-gpt
resources:
  gpus_per_node: 1
  time_limit: 10m
script: |
  #!/bin/bash
  exec python "$AIF_SUBMIT_DIR/examples/train_gpt/train.py" --steps {STEPS} --log-every 5 \\
    --n-layer 2 --n-embd 64 --batch-size 16 --block-size 32 --lr 5e-3 --warmup 5 \\
    --eval-every 20 --eval-batches 2 --sample-chars 20 --threads 1
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    if importlib.util.find_spec("torch") is None:
        reason = "torch is not installed (pip install -e '.[train]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; required under CI", pytrace=False)
        pytest.skip(reason)
    with served_federation() as fed:
        yield fed


def _signed_in(fed: Federation) -> httpx.Client:
    """A browser-like session: the portal's sign-in form with the user's API token."""
    web = httpx.Client(base_url=fed.url, timeout=30)
    page = web.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    form = {"method": "token", "token": fed.token, "csrf_token": csrf[1], "next": "/"}
    assert web.post("/login", data=form).status_code == 303
    return web


def _curve(job: dict[str, Any], metrics: dict[str, Any]) -> bool:
    loss = [s for s in metrics["series"] if s["key"] == "loss"]
    return bool(loss) and len(loss[0]["steps"]) >= 2


def test_the_training_jobs_loss_curve_is_served_live_and_complete(federation: Federation) -> None:
    fed = federation
    (fed.work / "tiny.yaml").write_text(SPEC)
    job_id, _ = fed.submit(Path("tiny.yaml"))
    fed.wait_for(
        job_id, "two loss points", lambda j: _curve(j, fed.api("GET", f"/jobs/{job_id}/metrics"))
    )
    web = _signed_in(fed)
    live = web.get(f"/jobs/{job_id}/metrics.frag")
    assert live.status_code == 200 and "<svg" in live.text and "<polyline" in live.text

    fed.wait_for(job_id, "the end", lambda j: j["state"] == "completed")
    metrics = fed.api("GET", f"/jobs/{job_id}/metrics")
    series = {s["key"]: s for s in metrics["series"]}
    loss = series["loss"]
    assert loss["steps"] == sorted(set(loss["steps"])) and loss["steps"][-1] == STEPS
    assert len(loss["steps"]) >= STEPS // 5
    assert all(math.isfinite(v) for v in loss["values"])
    assert loss["values"][-1] < loss["values"][0]  # it learns
    assert series["val_loss"]["steps"][-1] == STEPS and metrics["finished"] is True

    assert json.loads(fed.aif("jobs", "metrics", str(job_id), "--json")) == metrics
    table = fed.aif("jobs", "metrics", str(job_id))
    assert re.search(rf"^{STEPS}\t.*\d", table, re.MULTILINE), table  # tab-separated off a tty

    page = web.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    svg = re.search(r"<svg[^>]*class=\"chart loss\".*?</svg>", page.text, re.DOTALL)
    assert svg, page.text[-3000:]
    points = re.search(r'<polyline points="([^"]+)"', svg[0])
    assert points and len(points[1].split()) == len(loss["steps"])
    assert ">step</text>" in svg[0] and ">loss</text>" in svg[0]
    assert f"step {STEPS}: loss " in page.text
    _screenshots(web, f"{fed.url}/jobs/{job_id}")


def _axe() -> Any:
    """tests/integration/portal/axe_check.py (that folder is not on this module's path)."""
    where = ROOT / "tests" / "integration" / "portal" / "axe_check.py"
    spec = importlib.util.spec_from_file_location("axe_check", where)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _accessible(axe: Any, page: Any) -> None:
    """No serious or critical axe violation in the training metrics section (the rest of the
    page belongs to the portal's own browser tests)."""
    reason = axe.ensure_axe()
    if reason is not None:
        axe._skip_or_fail(reason)
    axe.run_axe(page)  # injects axe-core
    options = {"runOnly": {"type": "tag", "values": axe.TAGS}, "resultTypes": ["violations"]}
    result = page.evaluate("async (o) => await window.axe.run('#job-metrics', o)", options)
    blocking = [v for v in result["violations"] if v.get("impact") in axe.BLOCKING]
    assert not blocking, "\n".join(axe._describe(v) for v in blocking)


def _screenshots(web: httpx.Client, url: str) -> None:
    """The page at 1280 and 390 px for people to look at, checked with axe (skipped without
    chromium, except under CI)."""
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the job page's screenshots need chromium and playwright under CI")
        return
    from playwright.sync_api import sync_playwright

    axe = _axe()

    SHOTS.mkdir(parents=True, exist_ok=True)
    cookies = [{"name": c.name, "value": c.value or "", "url": url} for c in web.cookies.jar]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for width in (1280, 390):
            context = browser.new_context(viewport={"width": width, "height": 900})
            context.add_cookies(cookies)  # type: ignore[arg-type]
            page = context.new_page()
            page.goto(url)
            page.locator("svg.chart").wait_for()
            page.locator("#job-metrics").screenshot(path=SHOTS / f"metrics-job-{width}.png")
            page.screenshot(path=SHOTS / f"metrics-jobpage-{width}.png", full_page=True)
            _accessible(axe, page)
            context.close()
        browser.close()
