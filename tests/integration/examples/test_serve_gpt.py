"""The example model server speaks OpenAI's API: the official client works against it.

A tiny checkpoint is trained for 20 steps (a few seconds, mostly importing torch); servers run
as subprocesses on port 0 and are found by their ``AIF_SERVICE_URL=`` line, as the platform
finds replicas. Waits are on progress (a line of output, the process ending), not the clock.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aifactory.testing.jobs import run_watched

ROOT = Path(__file__).resolve().parents[3]
TRAIN = ROOT / "examples" / "train_gpt" / "train.py"
SERVE = ROOT / "examples" / "train_gpt" / "serve.py"
TINY = [
    "--n-layer", "2", "--n-embd", "64", "--batch-size", "16", "--block-size", "32",
    "--eval-every", "0", "--eval-batches", "1", "--sample-chars", "0",
]  # fmt: skip
MAX_MODEL_LEN = 4 * 32  # the default: four times the block size
PROMPT = "The harbour town woke before the sun."  # every character is in the corpus
EXIT_WAIT_S = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def _torch_available() -> None:
    if importlib.util.find_spec("torch") is None:
        reason = "torch is not installed (pip install -e '.[train]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; required under CI", pytrace=False)
        pytest.skip(reason)


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    url: str
    banner: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-5000:]

    def stop(self) -> int:
        """SIGTERM, then the exit status (SIGKILL if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"serve.py ignored SIGTERM:\n{self.log()}") from None
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def start(checkpoint: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Replica:
    """Start serve.py and return once it announced its URL; fail with its stderr if it exits."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIF_SERVICE_")}
    err = tmp / f"serve-{len(list(tmp.glob('serve-*')))}.err"
    with err.open("w") as stderr:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            [sys.executable, SERVE, "--checkpoint", checkpoint, *args],
            env={**clean, **(env or {})}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=stderr, text=True,
        )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # each line is progress; EOF means the server died
        lines.append(line)
        if line.startswith("AIF_SERVICE_URL="):
            url = line.strip().removeprefix("AIF_SERVICE_URL=")
            return Replica(proc, url, "".join(lines[:-1]), err)
    proc.wait()
    proc.stdout.close()
    raise AssertionError(f"serve.py exited {proc.returncode}: {''.join(lines)}{err.read_text()}")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def checkpoint(tmp: Path) -> Path:
    argv = [sys.executable, str(TRAIN), *TINY, "--steps", "20", "--checkpoint-every", "20"]
    done = run_watched([*argv, "--checkpoint-dir", str(tmp / "ckpt")])
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "ckpt"


@pytest.fixture(scope="module")
def replica(checkpoint: Path, tmp: Path) -> Iterator[Replica]:
    # Host and port from the environment, as the platform passes them.
    env = {"AIF_SERVICE_HOST": "127.0.0.1", "AIF_SERVICE_PORT": "0"}
    server = start(checkpoint, tmp, env=env)
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def client(replica: Replica) -> openai.OpenAI:
    return openai.OpenAI(base_url=replica.url + "/v1", api_key="x", max_retries=0, timeout=60)


def test_announces_itself_once_ready(replica: Replica) -> None:
    assert replica.url.startswith("http://127.0.0.1:") and not replica.url.endswith(":0")
    assert "params=" in replica.banner and "vocab=64 block_size=32" in replica.banner
    assert httpx.get(f"{replica.url}/health").json() == {"status": "ok"}


def test_lists_the_served_model(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["gpt-char"]
    assert models[0].owned_by == "aifactory"
    assert models[0].model_dump()["max_model_len"] == MAX_MODEL_LEN


def test_completion_counts_characters_as_tokens(client: openai.OpenAI) -> None:
    done = client.completions.create(model="any", prompt=PROMPT, max_tokens=12)
    assert done.object == "text_completion" and done.model == "gpt-char"
    assert len(done.choices[0].text) == 12 and done.choices[0].finish_reason == "length"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (len(PROMPT), 12)
    assert done.usage.total_tokens == len(PROMPT) + 12
    # Characters outside the vocabulary ("Z", "é") are dropped and not counted.
    odd = client.completions.create(model="any", prompt=["Zebra café"], max_tokens=1)
    assert odd.usage is not None and odd.usage.prompt_tokens == len("ebra caf")


def test_a_seed_or_temperature_zero_repeats_the_text(client: openai.OpenAI) -> None:
    def text(**extra: Any) -> str:
        done = client.completions.create(model="m", prompt=PROMPT, max_tokens=30, **extra)
        return str(done.choices[0].text)

    assert text(seed=7) == text(seed=7)
    assert text(seed=7, top_p=0.9) == text(seed=7, top_p=0.9)
    assert text(temperature=0) == text(temperature=0, seed=1) == text(temperature=0, seed=2)


def test_a_stop_string_ends_the_completion_and_is_not_returned(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="m", prompt=PROMPT, max_tokens=30, temperature=0)
    greedy = whole.choices[0].text
    stop = greedy[5:7]
    cut = client.completions.create(
        model="m", prompt=PROMPT, max_tokens=30, temperature=0, stop=[stop, "#never#"]
    )
    end = greedy.find(stop)
    assert cut.choices[0].text == greedy[:end] and cut.choices[0].finish_reason == "stop"
    assert cut.usage is not None and cut.usage.completion_tokens == end + len(stop)


def test_streamed_chat_matches_the_whole_answer(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "Tell a story."},
        {"role": "user", "content": [{"type": "text", "text": "The lighthouse"}]},
    ]
    kw: Any = {"model": "m", "messages": messages, "max_tokens": 24, "seed": 11}
    whole = client.chat.completions.create(**kw)
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    rendered = "System: Tell a story.\nser: The lighthouse\nAssistant: "  # no "U" in the corpus
    assert whole.usage is not None and whole.usage.prompt_tokens == len(rendered)

    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and text == whole.choices[0].message.content
    assert len(chunks) >= len(text) + 3  # role, a chunk per character, finish, usage
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_a_context_longer_than_the_model_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="m", prompt="a" * 120, max_tokens=16)
    assert caught.value.code == "context_length_exceeded"
    assert f"{MAX_MODEL_LEN} tokens" in caught.value.message and "136" in caught.value.message


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user"}]}, "messages[1].content"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ],
)
def test_invalid_chat_requests_name_the_field(
    client: openai.OpenAI, request_body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", **request_body)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert param in caught.value.message


def test_http_errors_are_json_in_openai_shape(replica: Replica) -> None:
    url = replica.url
    cases = [
        (httpx.post(f"{url}/v1/completions", content=b"{not json"), 400, "invalid_json"),
        (httpx.post(f"{url}/v1/completions", json={"max_tokens": 1}), 400, None),
        (httpx.get(f"{url}/v1/nothing"), 404, "not_found"),
        (httpx.get(f"{url}/v1/completions"), 405, "method_not_allowed"),
        (httpx.post(f"{url}/v1/completions", content=b" " * (1 << 20 | 1)), 413, None),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        if code:
            assert error["code"] == code
    assert cases[1][0].json()["error"]["param"] == "prompt"
    assert "Traceback" not in replica.log()


def events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line.removeprefix("data: "))


def test_streams_while_generating_and_drains_on_sigterm(checkpoint: Path, tmp: Path) -> None:
    """A long stream's first event comes at once; SIGTERM cuts it short and exits 0.

    The generation asked for takes minutes, so its usage showing fewer characters proves the
    first event arrived while the server was still generating, not buffered to the end.
    """
    server = start(checkpoint, tmp, "--port", "0", "--max-model-len", "1000000",
                   "--drain-timeout", "0.5", "--served-model-name", "tiny")  # fmt: skip
    asked = 500_000
    body = {"prompt": PROMPT, "max_tokens": asked, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    try:
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            stream = events(r.iter_lines())
            first = next(stream)
            assert first["object"] == "text_completion" and first["model"] == "tiny"
            # Another request is served between this stream's steps.
            other = {"prompt": "a", "max_tokens": 3}
            short = httpx.post(f"{server.url}/v1/completions", json=other, timeout=60).json()
            assert short["usage"]["completion_tokens"] == 3
            server.proc.send_signal(signal.SIGTERM)
            rest = list(stream)
        assert r.is_stream_consumed  # the stream ended properly (with [DONE])
        assert rest[-2]["choices"][0]["finish_reason"] == "length"
        generated = rest[-1]["usage"]["completion_tokens"]
        assert 1 <= generated < asked
        assert server.proc.wait(timeout=EXIT_WAIT_S) == 0, server.log()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=5)
    finally:
        server.stop()


def test_an_unusable_checkpoint_exits_2_with_one_line(tmp: Path) -> None:
    garbage = tmp / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    paths = [tmp / "missing", tmp / "ckpt-less", garbage]
    paths[1].mkdir()
    pipe = subprocess.PIPE
    argv = [[sys.executable, str(SERVE), "--checkpoint", str(p), "--port", "0"] for p in paths]
    # Side by side: each spends its time importing torch.
    runs = [subprocess.Popen(a, stdout=pipe, stderr=pipe, text=True) for a in argv]
    for path, proc in zip(paths, runs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and out == "", err
        assert len(err.splitlines()) == 1 and str(path) in err, err


def test_with_a_service_token_only_its_bearer_is_served(checkpoint: Path, tmp: Path) -> None:
    guarded = start(checkpoint, tmp, env={"AIF_SERVICE_TOKEN": "s3cret"})
    try:
        assert httpx.get(guarded.url + "/health", timeout=30).status_code == 200  # stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = httpx.get(guarded.url + "/v1/models", headers=headers, timeout=30)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
        ai = openai.OpenAI(base_url=guarded.url + "/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in ai.models.list()] == ["gpt-char"]
    finally:
        assert guarded.stop() == 0
