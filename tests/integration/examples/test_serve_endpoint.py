"""The trained model is the served model: `aif serve`, `aif submit` a small GPT training run,
`aif endpoints create --from-job`, and the official `openai` client against the gateway.

Everything goes through the doors users use (the CLI as a subprocess, the gateway over HTTP);
waits are on progress (states, answers), with generous ceilings as failure guards only.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, EndpointRequest
from aifactory.domain.enums import LedgerKind
from aifactory.services import ledger
from aifactory.settings import Settings
from aifactory.testing.databases import (
    create_scratch_postgres,
    drop_scratch_postgres,
    postgres_available,
)
from aifactory.testing.serving import CEILING_S, Federation, served_federation

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch", reason="the model server needs torch (the train extra)")

TRAIN = """name: tiny-gpt
project: {project}
resources: {{nodes: 1, gpus_per_node: 1, cpus: 2, memory_gb: 4, time_limit: "00:10:00"}}
script: |
  #!/bin/bash
  exec python "$AIF_SUBMIT_DIR/examples/train_gpt/train.py" --steps 30 --batch-size 8 \\
    --eval-batches 1 --checkpoint-dir "$AIF_CHECKPOINT_DIR" --checkpoint-every 30
environment: {{PYTHONUNBUFFERED: "1"}}
checkpoint_dir: checkpoints/tiny
"""
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train_gpt" / "endpoint.yaml"


@pytest.fixture(scope="module")
def fed() -> Iterator[Federation]:
    with served_federation() as federation:
        yield federation
        stop_all(federation)


def stop_all(fed: Federation) -> None:
    """Stop every endpoint and wait for its replicas to end: jobs outlive `aif serve`."""
    for live in json.loads(fed.aif("endpoints", "list", "--json")):
        fed.aif("endpoints", "delete", live["name"])

    def ended() -> bool:
        views = json.loads(fed.aif("endpoints", "list", "--all", "--json"))
        return all(r["state"] == "ended" for v in views for r in v["replicas"])

    until("every replica ended", ended)


@pytest.fixture(scope="module")
def trained(fed: Federation) -> int:
    return train(fed)


def train(fed: Federation) -> int:
    """A training job that completed and left a checkpoint: its id."""
    (fed.work / "train.yaml").write_text(TRAIN.format(project=fed.project))
    job_id, out = fed.submit(Path("train.yaml"), "--follow")
    assert "completed (exit code 0)" in out, out
    return job_id


def endpoint(
    fed: Federation, trained: int, name: str, *extra: str, **changes: Any
) -> dict[str, Any]:
    """`aif endpoints create` the shipped example under another name, with changes."""
    spec = yaml.safe_load(EXAMPLE.read_text()) | {"name": name} | changes
    path = fed.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    argv = ["endpoints", "create", str(path), "--project", fed.project, "--from-job"]
    return dict(fed.aif_json(*argv, str(trained), *extra))


def new_key(fed: Federation, name: str) -> str:
    return str(json.loads(fed.aif("endpoints", "keys", "create", name, "--json"))["key"])


def client(fed: Federation, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fed.url + "/v1", api_key=key, max_retries=0, timeout=CEILING_S)


def shown(fed: Federation, name: str) -> dict[str, Any]:
    return dict(json.loads(fed.aif("endpoints", "show", name, "--json")))


def until(what: str, check: Callable[[], Any], ceiling: float = CEILING_S) -> Any:
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {ceiling:.0f} s")


def test_the_trained_gpt_answers_the_official_openai_client(fed: Federation, trained: int) -> None:
    view = endpoint(fed, trained, "gpt-char", "--wait")
    assert view["state"] == "ready", view
    assert view["checkpoint_path"].endswith("checkpoints/tiny")
    replica_job = fed.api("GET", f"/jobs/{view['replicas'][0]['job_id']}")
    env = replica_job["spec"]["environment"]
    assert env["AIF_SERVICE_TOKEN"] == "(hidden)"  # the gateway's credential: the job's alone
    assert env["AIF_ENDPOINT_NAME"] == "gpt-char" and env["AIF_MODEL_CHECKPOINT"]
    ai = client(fed, new_key(fed, "gpt-char"))
    assert [m.id for m in ai.models.list()] == ["gpt-char"]

    done = ai.completions.create(model="gpt-char", prompt="The cat ", max_tokens=12, seed=7)
    assert done.usage is not None and done.usage.prompt_tokens == len("The cat ")
    assert done.usage.completion_tokens == len(done.choices[0].text) == 12
    again = ai.completions.create(model="gpt-char", prompt="The cat ", max_tokens=12, seed=7)
    assert again.choices[0].text == done.choices[0].text  # seeded: the same answer

    chunks = list(
        ai.chat.completions.create(
            model="gpt-char",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 10 and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10
    plain = list(
        ai.chat.completions.create(
            model="gpt-char", messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
            stream=True,
        )
    )  # fmt: skip
    assert all(c.usage is None for c in plain)  # usage only when asked, as OpenAI does

    usage = shown(fed, "gpt-char")["usage"]
    assert usage["requests"] == 4
    assert usage["tokens_out"] == 12 + 12 + 10 + 3
    assert usage["tokens_in"] >= 2 * len("The cat ") + chunks[-1].usage.prompt_tokens + 1


def test_bad_keys_and_bad_requests_get_clear_errors(fed: Federation, trained: int) -> None:
    until("ready endpoint", lambda: shown(fed, "gpt-char")["state"] == "ready")
    with pytest.raises(openai.AuthenticationError) as denied:
        client(fed, "aif-ep-not-a-key").completions.create(model="gpt-char", prompt="x")
    assert denied.value.status_code == 401 and "invalid API key" in str(denied.value)

    ai = client(fed, new_key(fed, "gpt-char"))
    with pytest.raises(openai.NotFoundError, match="not served with this key"):
        ai.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError) as long:
        ai.completions.create(model="gpt-char", prompt="x" * 300, max_tokens=16)
    assert long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="messages"):
        ai.chat.completions.create(model="gpt-char", messages=[{"role": "robot"}])  # type: ignore[list-item,typeddict-item]
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        ai.completions.create(model="gpt-char", prompt="x", max_tokens=0)

    revoked = new_key(fed, "gpt-char")
    keys = json.loads(fed.aif("endpoints", "keys", "list", "gpt-char", "--json"))
    fed.aif("endpoints", "keys", "revoke", "gpt-char", str(keys[-1]["id"]))
    with pytest.raises(openai.AuthenticationError):
        client(fed, revoked).completions.create(model="gpt-char", prompt="x")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"replica": None}, "replica"),
        ({"replicas": {"min": 1, "max": 40}}, "replicas.max"),
        ({"replicas": {"min": 0, "max": 1}, "scale_to_zero_after": None}, "endpoint spec"),
        ({"checkpoint": {"job": 999}}, "checkpoint.job"),
        ({"name": "Not A Name"}, "name"),
    ],
)
def test_bad_endpoint_specs_are_refused_naming_the_field_and_start_nothing(
    fed: Federation, trained: int, change: dict[str, Any], field: str
) -> None:
    spec = yaml.safe_load(EXAMPLE.read_text()) | {"name": "bad-one", "project": fed.project}
    spec |= {"checkpoint": {"job": trained}} | change
    jobs_before = fed.api("GET", "/jobs")["jobs"]
    response = httpx.post(
        f"{fed.url}/api/v1/endpoints",
        json={"spec": spec},
        headers={"Authorization": f"Bearer {fed.token}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert field in response.text
    assert fed.api("GET", "/jobs")["jobs"] == jobs_before
    assert "bad-one" not in fed.aif("endpoints", "list", "--all")


def _pid_listening(port: int) -> int:
    """The process that listens on ``port`` (found through /proc, as `ss -p` does)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{i}]" in links for i in inodes):
            return int(proc.name)
    raise AssertionError(f"nobody listens on port {port}")


def _kill_replica(replica: dict[str, Any]) -> None:
    os.kill(_pid_listening(int(replica["address"].rsplit(":", 1)[1])), signal.SIGKILL)


def test_a_killed_replica_is_replaced_while_the_other_keeps_answering(
    fed: Federation, trained: int
) -> None:
    endpoint(fed, trained, "gpt-two", replicas={"min": 2, "max": 2, "target_inflight": 8})

    def two_ready() -> list[dict[str, Any]]:
        ready = [r for r in shown(fed, "gpt-two")["replicas"] if r["state"] == "ready"]
        return ready if len(ready) == 2 else []

    ready = until("two ready replicas", two_ready)
    ai = client(fed, new_key(fed, "gpt-two"))
    answers: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                done = ai.completions.create(model="gpt-two", prompt="A", max_tokens=4)
                answers.append(done.choices[0].text)
            except BaseException as exc:
                failures.append(exc)

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for t in askers:
        t.start()
    until("answers before the kill", lambda: len(answers) >= 4)
    _kill_replica(ready[0])
    replaced = until(
        "a new ready replica",
        lambda: [
            r for r in shown(fed, "gpt-two")["replicas"]
            if r["state"] == "ready" and r["id"] not in {x["id"] for x in ready}
        ],
    )  # fmt: skip
    count = len(answers)
    until("answers after the replacement", lambda: len(answers) >= count + 4)
    stop.set()
    for t in askers:
        t.join(timeout=CEILING_S)
    assert failures == [], failures[:3]
    assert replaced
    view = shown(fed, "gpt-two")
    dead = next(r for r in view["replicas"] if r["id"] == ready[0]["id"])
    assert dead["state"] == "ended"
    # Each request is metered once, however often the gateway had to try.
    assert view["usage"]["requests"] == len(answers)
    db = _database(fed)
    with db.session() as s:
        ids = list(s.scalars(select(EndpointRequest.request_id)))
    assert len(ids) == len(set(ids))
    fed.aif("endpoints", "delete", "gpt-two")


def test_one_replica_killed_recovers_and_the_waiting_request_is_answered(
    fed: Federation, trained: int
) -> None:
    view = endpoint(fed, trained, "gpt-one", "--wait", replicas={"min": 1, "max": 1})
    ai = client(fed, new_key(fed, "gpt-one"))
    ready = [r for r in view["replicas"] if r["state"] == "ready"]
    _kill_replica(ready[0])
    # The request waits while the replica is replaced (its restart time), then is answered.
    answer = ai.completions.create(model="gpt-one", prompt="B", max_tokens=3)
    assert len(answer.choices[0].text) == 3
    fed.aif("endpoints", "delete", "gpt-one")


def test_scale_to_zero_and_back_on_the_next_request(fed: Federation, trained: int) -> None:
    endpoint(fed, trained, "gpt-zero", replicas={"min": 0, "max": 1}, scale_to_zero_after="1s")
    assert shown(fed, "gpt-zero")["state"] == "idle"
    ai = client(fed, new_key(fed, "gpt-zero"))
    first = ai.completions.create(model="gpt-zero", prompt="C", max_tokens=2)  # cold start
    assert len(first.choices[0].text) == 2
    until("scaled to zero", lambda: shown(fed, "gpt-zero")["state"] == "idle")
    assert all(r["state"] == "ended" for r in shown(fed, "gpt-zero")["replicas"])
    again = ai.completions.create(model="gpt-zero", prompt="C", max_tokens=2)
    assert len(again.choices[0].text) == 2
    fed.aif("endpoints", "delete", "gpt-zero")


def test_a_rolling_update_serves_throughout(fed: Federation, trained: int) -> None:
    spec = yaml.safe_load(EXAMPLE.read_text()) | {"name": "gpt-roll", "project": fed.project}
    spec["checkpoint"] = {"job": trained}
    (fed.work / "roll.yaml").write_text(yaml.safe_dump(spec))
    fed.aif("endpoints", "create", "roll.yaml", "--wait")
    ai = client(fed, new_key(fed, "gpt-roll"))
    spec["replica"]["environment"]["MODEL_VERSION"] = "2"
    (fed.work / "roll.yaml").write_text(yaml.safe_dump(spec))
    fed.aif("endpoints", "update", "gpt-roll", "roll.yaml")

    def rolled() -> bool:
        ai.completions.create(model="gpt-roll", prompt="D", max_tokens=1)  # never fails
        replicas = shown(fed, "gpt-roll")["replicas"]
        live = [r for r in replicas if r["state"] in ("ready", "starting", "draining")]
        return bool(live) and all(r["spec_version"] == 2 and r["state"] == "ready" for r in live)

    until("version 2 everywhere", rolled)
    fed.aif("endpoints", "delete", "gpt-roll")


def _database(fed: Federation) -> Database:
    return Database(Settings(data_dir=Path(fed.env["AIF_DATA_DIR"])).effective_database_url)


def test_an_exhausted_budget_refuses_requests_with_the_reason(
    fed: Federation, trained: int
) -> None:
    endpoint(fed, trained, "gpt-broke", replicas={"min": 0, "max": 1}, scale_to_zero_after="1h")
    ai = client(fed, new_key(fed, "gpt-broke"))
    db = _database(fed)
    with db.session() as s:
        allocation = s.scalars(
            select(Allocation).where(Allocation.project_code == fed.project)
        ).one()
        left = ledger.state(s, allocation.id).remaining
        ledger.post(s, allocation.id, LedgerKind.ADJUST, -left, "test", note="used elsewhere")
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            ai.completions.create(model="gpt-broke", prompt="E", max_tokens=2)
        assert refused.value.status_code == 402
        assert "budget exhausted" in str(refused.value) and "remain" in str(refused.value)
        view = shown(fed, "gpt-broke")
        assert view["state"] == "exhausted"
        for replica in view["replicas"]:  # its job waits for budget: nothing runs or is charged
            job = fed.api("GET", f"/jobs/{replica['job_id']}")
            assert job["state"] == "pending" and float(job["charged_gpu_hours"]) == 0
    finally:
        with db.session() as s:
            ledger.post(s, allocation.id, LedgerKind.ADJUST, left, "test", note="top-up")
        db.dispose()
    fed.aif("endpoints", "delete", "gpt-broke")


def test_on_postgresql_the_trained_model_is_served_and_a_dead_replica_replaced() -> None:
    """The same path on PostgreSQL (controllers woken by NOTIFY, metering in its rows)."""
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    name, url = create_scratch_postgres()
    try:
        with served_federation(database_url=url) as pg:
            view = endpoint(pg, train(pg), "gpt-pg", "--wait", replicas={"min": 1, "max": 1})
            ai = client(pg, new_key(pg, "gpt-pg"))
            done = ai.completions.create(model="gpt-pg", prompt="The ", max_tokens=5)
            assert done.usage is not None and done.usage.completion_tokens == 5
            chunks = list(
                ai.chat.completions.create(
                    model="gpt-pg", messages=[{"role": "user", "content": "Hi"}],
                    max_tokens=4, stream=True,
                )
            )  # fmt: skip
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            _kill_replica(next(r for r in view["replicas"] if r["state"] == "ready"))
            again = ai.completions.create(model="gpt-pg", prompt="The ", max_tokens=5)
            assert len(again.choices[0].text) == 5
            assert shown(pg, "gpt-pg")["usage"]["requests"] == 3
            stop_all(pg)
    finally:
        drop_scratch_postgres(name)


def test_requests_in_flight_bring_a_second_replica(fed: Federation, trained: int) -> None:
    endpoint(
        fed, trained, "gpt-busy", "--wait",
        replicas={"min": 1, "max": 2, "target_inflight": 2}, scale_to_zero_after="1h",
    )  # fmt: skip
    ai = client(fed, new_key(fed, "gpt-busy"))
    stop = threading.Event()

    def stream() -> None:  # long answers, read slowly: requests stay in flight
        while not stop.is_set():
            answer = ai.completions.create(
                model="gpt-busy", prompt="F", max_tokens=200, stream=True
            )
            for _ in answer:
                if stop.is_set():
                    break

    load = [threading.Thread(target=stream) for _ in range(4)]
    for t in load:
        t.start()
    try:
        view = until(
            "a second ready replica",
            lambda: (
                (v := shown(fed, "gpt-busy"))["desired"] == 2
                and sum(r["state"] == "ready" for r in v["replicas"]) == 2
                and v
            ),
        )
    finally:
        stop.set()
        for t in load:
            t.join(timeout=CEILING_S)
    assert view["state"] == "ready"
    fed.aif("endpoints", "delete", "gpt-busy")
