"""Helpers for interactive-session tests: follow a session, run a cell through the proxy.

Waits are on progress (the session's state, reason or job state changing), never a fixed
time; the stall and ceiling only bound a failure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from websockets.sync.client import connect

from aifactory.testing.jobs import wait_for

STALL_S = 120.0  # nothing moved for this long: fail
CELL_TIMEOUT_S = 120.0


def follow(
    http: httpx.Client,
    session_id: int,
    headers: Mapping[str, str],
    until: Callable[[dict[str, Any]], bool],
    what: str,
    stall: float = STALL_S,
) -> dict[str, Any]:
    """Poll ``GET /api/v1/sessions/<id>`` until ``until(view)``; returns that view."""
    seen: dict[str, Any] = {}

    def look() -> dict[str, Any]:
        answer = http.get(f"/api/v1/sessions/{session_id}", headers=dict(headers))
        assert answer.status_code == 200, answer.text
        seen.clear()
        seen.update(answer.json())
        return seen

    wait_for(
        lambda: until(look()),
        lambda: (seen.get("state"), seen.get("reason"), seen.get("job_state")),
        stall=stall,
        step=0.2,
        what=what,
    )
    return dict(seen)


def run_cell(base_url: str, session_id: int, headers: Mapping[str, str], code: str) -> str:
    """Start a kernel through the proxy (REST), run ``code`` over its WebSocket, return what it
    printed; the kernel is shut down afterwards. An error in the cell raises with its traceback.
    """
    prefix = f"/sessions/{session_id}/api/kernels"
    with httpx.Client(base_url=base_url, headers=dict(headers), timeout=60) as http:
        started = http.post(prefix, json={"name": "python3"})
        assert started.status_code == 201, started.text
        kernel = started.json()["id"]
        try:
            ws_url = base_url.replace("http", "ws", 1) + f"{prefix}/{kernel}/channels"
            with connect(ws_url, additional_headers=dict(headers), open_timeout=60) as ws:
                return _execute(ws, code)
        finally:
            http.delete(f"{prefix}/{kernel}")


def _execute(ws: Any, code: str) -> str:
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "username": "test",
        "session": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    request = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
    ws.send(json.dumps({**request, "channel": "shell", "buffers": []}))
    printed: list[str] = []
    while True:
        message = json.loads(ws.recv(timeout=CELL_TIMEOUT_S))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, body = message["msg_type"], message["content"]
        if kind == "stream":
            printed.append(body["text"])
        elif kind == "error":
            raise AssertionError("the cell failed:\n" + "\n".join(body["traceback"]))
        elif kind == "status" and body["execution_state"] == "idle":
            return "".join(printed)


def run_in_new_notebook(page: Any, code: str) -> Any:
    """On JupyterLab's launcher (Playwright ``page``): open a notebook, wait for its kernel,
    type ``code`` into its first cell, check it arrived whole, run it; returns the locator of
    the cell's output. Each step waits on what the page shows, never on a clock."""
    from playwright.sync_api import expect

    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.type(code)
    expect(editor).to_have_text(code)
    page.keyboard.press("Shift+Enter")
    return page.locator(".jp-OutputArea-output").first
