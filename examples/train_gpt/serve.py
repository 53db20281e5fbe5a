"""Serve a checkpoint of the example character-level GPT over the OpenAI HTTP API.

    python examples/train_gpt/serve.py --checkpoint /tmp/ckpt [--host H] [--port P] \\
        [--served-model-name gpt-char] [--max-model-len N] [--seed S] [--threads 1] \\
        [--drain-timeout 2]

Only the standard library's ``http.server``, torch and ``model.py`` beside this file are used.

Wire contract with the platform (a replica is a long-lived job; a gateway forwards to it):

* Once the model is loaded and the socket listens, stdout gets one human-readable startup line,
  then exactly ``AIF_SERVICE_URL=http://HOST:PORT`` (the bound port; for a wildcard host,
  0.0.0.0 or ::, the machine's ``socket.gethostname()``). Nothing else is printed to stdout.
  ``--host`` and ``--port`` default to ``$AIF_SERVICE_HOST`` (else 127.0.0.1) and
  ``$AIF_SERVICE_PORT`` (else 0: any free port).
* With ``$AIF_SERVICE_TOKEN`` set, every request but ``/health`` must carry
  ``Authorization: Bearer <token>`` (401 otherwise): the platform gives each replica a token
  and only its gateway knows it, so the replica may listen where other users can reach it.
* A checkpoint that is missing, unreadable or not train.py's format: one line on stderr, exit 2.
* SIGTERM or SIGINT: stop accepting; in-flight requests get ``--drain-timeout`` seconds to
  finish, after which their generation is cut short (finish_reason "length", still a complete
  response); then exit 0. Requests on kept-alive connections meanwhile get 503.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions`` in OpenAI's wire format. With ``stream`` true the answer is
Server-Sent Events, one per generated character (a character that might begin a stop string
waits for the next), sent as it is made: chunked transfer encoding, or for an HTTP/1.0 client
until the connection closes. Wrong methods get 405, unknown paths 404, all errors as JSON.

Tokens are characters. ``prompt_tokens`` counts the prompt characters the model saw: characters
outside the checkpoint's vocabulary are dropped from the input and not counted. An empty input
starts from a newline, which is not counted either. ``completion_tokens`` counts every character
generated, including those of a matched stop string (which is not returned). A request needs
prompt_tokens + max_tokens <= max_model_len (default 4 x block_size); the model itself attends
to the last block_size characters, so longer contexts slide.

Chat messages are rendered as plain text, one line per message, then the assistant's cue::

    System: <content>
    User: <content>
    Assistant: <content>
    Assistant:<space>

("developer" renders as System; text parts of a content list are joined without a separator.
The role names go through the vocabulary too: the shipped corpus has no "U", so the model
sees "ser: ".)

Requests run concurrently, each one forward pass per character (no KV cache) under a lock held
for that one step, so streams interleave and a new request's first character comes soon. Torch
uses ``--threads`` CPU threads (1 by default: many replicas share a small machine).

Sampling: ``temperature`` 0 is greedy (argmax); ``top_p`` < 1 samples from the nucleus;
``seed`` makes a request's sampling reproducible (the same request, the same text). Without a
seed each request draws one from a server generator seeded by ``--seed`` (random by default).
``max_tokens`` defaults to 16 for both endpoints (chat also reads ``max_completion_tokens``);
``n`` must be 1; ``model`` may be anything (the served name is echoed); other OpenAI fields,
such as penalties, ``logprobs`` or ``user``, are accepted and ignored. Bodies over 1 MiB: 413.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import pickle
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from model import GPT, GPTConfig
from torch.nn import functional as F

CHECKPOINT = "ckpt.pt"  # train.py's CHECKPOINT (not imported: that pulls in torch.distributed)
MAX_BODY = 1 << 20  # bytes of a request body
DRAIN_LIMIT = 16 << 20  # an over-large body up to this size is read and dropped before the 413
MAX_STOP = 4  # stop strings per request, as OpenAI allows
ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
ROUTES = {
    "/health": ("GET", "health"),
    "/v1/models": ("GET", "models"),
    "/v1/completions": ("POST", "completions"),
    "/v1/chat/completions": ("POST", "chat_completions"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    p.add_argument("--checkpoint", type=Path, required=True, help=f"{CHECKPOINT} or its folder")
    p.add_argument("--host", default=env("AIF_SERVICE_HOST") or "127.0.0.1")
    p.add_argument("--port", type=int, default=env("AIF_SERVICE_PORT") or "0", help="0: any")
    p.add_argument("--served-model-name", default="gpt-char", help="the model id clients see")
    p.add_argument("--max-model-len", type=int, default=None, help="default: 4 x block_size")
    p.add_argument("--seed", type=int, default=None, help="seeds requests that bring no seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--drain-timeout", type=float, default=2.0, help="seconds, on SIGTERM")
    args = p.parse_args(argv)
    if args.max_model_len is not None and args.max_model_len < 1:
        p.error("--max-model-len must be at least 1")
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


# --- the model -----------------------------------------------------------------------------


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


class CheckpointError(Exception):
    """The checkpoint cannot be served; the message is one line for stderr."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def read_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    """Load the checkpoint file (``path`` or ``path/ckpt.pt``) onto the CPU, weights only."""
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        where = f"no {CHECKPOINT} in {path}" if path.is_dir() else f"no checkpoint at {path}"
        raise CheckpointError(where)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's message is long; its reason sits in the middle
        why = str(e).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise CheckpointError(f"{file} is not a weights-only torch checkpoint: {why}") from e
    except Exception as e:  # pickle, zip and I/O errors alike: the file is not a checkpoint
        raise CheckpointError(f"cannot read {file}: {one_line(e)}") from e
    if not isinstance(state, dict) or not {"model", "config", "vocab"} <= state.keys():
        raise CheckpointError(f"{file} is not a train.py checkpoint (model, config, vocab)")
    return file, state


def build_model(file: Path, state: dict[str, Any]) -> tuple[GPT, str]:
    """The GPT and its vocabulary (index = token id) from a loaded checkpoint."""
    vocab = state["vocab"]
    try:
        cfg = GPTConfig(**state["config"])
        if not isinstance(vocab, str) or len(vocab) != cfg.vocab_size:
            raise ValueError(f"vocab is not a string of {cfg.vocab_size} characters")
        model = GPT(cfg)
        model.load_state_dict(state["model"])
    except Exception as e:  # wrong config keys, shapes or types
        raise CheckpointError(f"{file} does not hold a GPT of this example: {one_line(e)}") from e
    return model.eval(), vocab


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # longest first: of two matches, the earlier-starting one wins


class Engine:
    """The model behind a lock held for one forward step, so concurrent requests interleave."""

    def __init__(self, model: GPT, vocab: str, max_model_len: int, seed: int | None) -> None:
        self.model, self.vocab, self.max_model_len = model, vocab, max_model_len
        self.block_size = model.cfg.block_size
        self.stoi = {c: i for i, c in enumerate(vocab)}
        self.start_id = self.stoi.get("\n", 0)
        self.lock = threading.Lock()
        self.cutoff = threading.Event()  # set when draining ran out of time: generation ends
        self._seeds = random.Random(seed)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; characters outside the vocabulary are dropped."""
        return [self.stoi[c] for c in text if c in self.stoi]

    def generate(self, ids: list[int], sampling: Sampling) -> Iterator[str]:
        """Yield up to ``max_tokens`` sampled characters after ``ids``."""
        seed = sampling.seed if sampling.seed is not None else self._seeds.getrandbits(63)
        gen = torch.Generator().manual_seed(seed % 2**64)
        context = list(ids) or [self.start_id]
        for _ in range(sampling.max_tokens):
            if self.cutoff.is_set():
                return
            nxt = pick(self.step(context[-self.block_size :]), sampling, gen)
            context.append(nxt)
            yield self.vocab[nxt]

    def step(self, context: list[int]) -> torch.Tensor:
        """Logits for the character after ``context`` (at most block_size ids)."""
        x = torch.tensor([context], dtype=torch.long)
        with self.lock, torch.inference_mode():
            logits, _ = self.model(x)
        last: torch.Tensor = logits[0, -1].float()
        return last


def pick(logits: torch.Tensor, s: Sampling, gen: torch.Generator) -> int:
    """The next token id: argmax at temperature 0, else a sample (from the top-p nucleus)."""
    if s.temperature == 0:
        return int(torch.argmax(logits))
    probs = F.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        ranked, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ranked, 0) - ranked < s.top_p
        keep[0] = True  # the most likely token always stays (top_p 0: it alone)
        probs = torch.zeros_like(probs).scatter(0, order[keep], ranked[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


@dataclass
class Outcome:
    text: str = ""
    completion_tokens: int = 0
    finish_reason: str = "length"


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` could still begin a stop string."""
    for k in range(min(len(text), max(map(len, stops), default=1) - 1), 0, -1):
        if any(len(s) > k and text.endswith(s[:k]) for s in stops):
            return k
    return 0


def run(engine: Engine, ids: list[int], sampling: Sampling, out: Outcome) -> Iterator[str]:
    """Yield the completion's text as it becomes final, filling ``out`` on the way.

    Characters that may begin a stop string are held back until they cannot; a matched stop
    string ends the completion and is not part of its text.
    """
    text, sent = "", 0
    for ch in engine.generate(ids, sampling):
        text += ch
        out.completion_tokens += 1
        hit = next((s for s in sampling.stop if text.endswith(s)), None)
        if hit is not None:
            text, out.finish_reason = text[: len(text) - len(hit)], "stop"
            break
        final = len(text) - held_back(text, sampling.stop)
        if final > sent:
            yield text[sent:final]
            sent = final
    out.text = text
    if len(text) > sent:
        yield text[sent:]


# --- requests ------------------------------------------------------------------------------


class ApiError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind
        self.close = status in (411, 413, 503)  # the body may be unread, or we are stopping

    def body(self) -> dict[str, Any]:
        error = {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error}


def invalid(param: str, rule: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, f"'{param}' {rule}", param=param, code=code)


def number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, "must be a number", "invalid_type")
    if not low <= value <= high:
        raise invalid(name, f"must be between {low:g} and {high:g}; got {value}")
    return float(value)


def integer(body: dict[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "must be an integer", "invalid_type")
    return value


def stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    found = [value] if isinstance(value, str) else value
    if not isinstance(found, list) or not all(isinstance(s, str) for s in found):
        raise invalid("stop", "must be a string or a list of strings", "invalid_type")
    if len(found) > MAX_STOP:
        raise invalid("stop", f"may hold at most {MAX_STOP} strings; got {len(found)}")
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))  # "" stops nothing


def sampling_of(body: dict[str, Any], chat: bool) -> Sampling:
    name = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    max_tokens = integer(body, name, 16)
    assert max_tokens is not None
    if max_tokens < 1:
        raise invalid(name, f"must be at least 1; got {max_tokens}")
    if integer(body, "n", 1) != 1:
        raise invalid("n", "must be 1: this server returns one choice")
    return Sampling(
        max_tokens=max_tokens,
        temperature=number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=number(body, "top_p", 1.0, 0.0, 1.0),
        seed=integer(body, "seed", None),
        stop=stops(body.get("stop")),
    )


def prompt_of(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("prompt", "is required", "missing_required_parameter")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt", "must be a string or a list with exactly one string")
    return prompt


def message_text(i: int, message: Any) -> str:
    """One chat message as a line of text: ``Role: content``."""
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid(where, "must be an object with 'role' and 'content'", "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"{where}.role", f"must be one of system, user, assistant; got {role!r}")
    content = message.get("content")
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise invalid(f"{where}.content[{j}]", "must be a text part (type 'text')")
            if not isinstance(part.get("text"), str):
                raise invalid(f"{where}.content[{j}].text", "must be a string", "invalid_type")
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise invalid(f"{where}.content", "must be a string or a list of text parts")
    return f"{ROLES[role]}: {content}\n"


def chat_prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if messages is None:
        raise invalid("messages", "is required", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty list of messages")
    return "".join(message_text(i, m) for i, m in enumerate(messages)) + "Assistant: "


@dataclass(frozen=True)
class Job:
    """A validated request: what to generate and how to answer."""

    chat: bool
    ids: list[int]
    sampling: Sampling
    stream: bool
    include_usage: bool


def job_of(body: dict[str, Any], chat: bool, engine: Engine) -> Job:
    text = chat_prompt(body) if chat else prompt_of(body)
    sampling = sampling_of(body, chat)
    stream, options = body.get("stream", False), body.get("stream_options")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("stream", "must be a boolean", "invalid_type")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options", "must be an object", "invalid_type")
    include_usage = (options or {}).get("include_usage") or False
    if not isinstance(include_usage, bool):
        raise invalid("stream_options.include_usage", "must be a boolean", "invalid_type")
    ids = engine.encode(text)
    wanted = len(ids) + sampling.max_tokens
    if wanted > engine.max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {engine.max_model_len} tokens "
            f"(characters); you requested {wanted}: {len(ids)} in the prompt and "
            f"{sampling.max_tokens} for the completion. Shorten the prompt or max_tokens.",
            param="messages" if chat else "prompt",
            code="context_length_exceeded",
        )
    return Job(chat, ids, sampling, stream, include_usage)


# --- responses -----------------------------------------------------------------------------


def usage(job: Job, out: Outcome) -> dict[str, int]:
    p, c = len(job.ids), out.completion_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def envelope(job: Job, rid: str, created: int, model: str, chunk: bool) -> dict[str, Any]:
    kind = ("chat.completion" if job.chat else "text_completion") + (
        ".chunk" if chunk and job.chat else ""
    )
    return {"id": rid, "object": kind, "created": created, "model": model}


def choice(job: Job, text: str | None, finish: str | None, chunk: bool) -> dict[str, Any]:
    """One choice: whole (``chunk`` false) or a streamed piece (``text`` None: no content)."""
    if not job.chat:
        return {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    if chunk:
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    message = {"role": "assistant", "content": text}
    return {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}


# --- HTTP ----------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    """The listening socket, the engine, and a count of requests in flight."""

    daemon_threads = True
    # socketserver's default backlog is 5: a burst of new connections (a gateway reopening its
    # pool after an idle spell) had most of them reset before they were accepted.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Engine, name: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.engine, self.name, self.created = engine, name, int(time.time())
        self.token = os.environ.get("AIF_SERVICE_TOKEN", "")
        self.stopping = False
        self._busy = 0
        self._idle = threading.Condition()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's getfqdn (a DNS lookup)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aif-gpt-serve/1"
    disable_nagle_algorithm = True  # an event is sent the moment it is written
    timeout = 120  # seconds an idle kept-alive connection may hold its thread
    server: Server

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_HEAD(self) -> None:
        self.dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self.dispatch("OPTIONS")

    def dispatch(self, method: str) -> None:
        self.started = False  # whether a response's headers went out
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            with self.server.in_flight():
                self.route(method, path)
        except ApiError as e:
            self.send_json(e.status, e.body(), close=e.close, allow=ROUTES.get(path, ("",))[0])
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client left; nothing to answer
        except Exception:
            sys.stderr.write(f"error in {method} {path}:\n{traceback.format_exc()}")
            self.close_connection = True
            if not self.started:
                error = ApiError(500, "internal server error", kind="server_error")
                self.send_json(500, error.body(), close=True)

    def route(self, method: str, path: str) -> None:
        if self.server.stopping:
            raise ApiError(503, "the server is shutting down", kind="server_error")
        if path not in ROUTES:
            raise ApiError(404, f"no such endpoint: {method} {path}", code="not_found")
        allowed, name = ROUTES[path]
        if method != allowed:
            raise ApiError(405, f"{path} takes {allowed}, not {method}", code="method_not_allowed")
        if name != "health" and not self.authorised():
            raise ApiError(401, "missing or wrong bearer token", code="invalid_api_key")
        getattr(self, name)()

    def authorised(self) -> bool:
        """With ``$AIF_SERVICE_TOKEN`` set (the platform sets it for each replica), only a
        caller that sends it as a bearer token (the gateway) is served; /health stays open."""
        token = self.server.token
        given = self.headers.get("Authorization", "")
        return not token or hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def health(self) -> None:
        self.send_json(200, {"status": "ok"})

    def models(self) -> None:
        s = self.server
        card = {"id": s.name, "object": "model", "created": s.created, "owned_by": "aifactory",
                "max_model_len": s.engine.max_model_len}  # fmt: skip
        self.send_json(200, {"object": "list", "data": [card]})

    def completions(self) -> None:
        self.answer(job_of(self.read_json(), chat=False, engine=self.server.engine))

    def chat_completions(self) -> None:
        self.answer(job_of(self.read_json(), chat=True, engine=self.server.engine))

    def read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, "send the body with a Content-Length", code="length_required")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            raise ApiError(400, "invalid Content-Length header", code="invalid_header")
        if length > MAX_BODY:
            left = length if length <= DRAIN_LIMIT else 0
            while left > 0:  # read it, so the client is not reset before it reads the answer
                left -= len(self.rfile.read(min(1 << 16, left))) or left
            raise ApiError(413, f"the body has {length} bytes; at most {MAX_BODY} (1 MiB)",
                           code="request_too_large")  # fmt: skip
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as e:
            raise ApiError(400, f"malformed JSON body: {e}", code="invalid_json") from e
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        return body

    def answer(self, job: Job) -> None:
        if job.stream:
            self.stream(job)
            return
        out = Outcome()
        for _ in run(self.server.engine, job.ids, job.sampling, out):
            pass
        body = envelope(job, new_id(job), int(time.time()), self.server.name, chunk=False)
        body["choices"] = [choice(job, out.text, out.finish_reason, chunk=False)]
        body["usage"] = usage(job, out)
        self.send_json(200, body)

    def stream(self, job: Job) -> None:
        """Server-Sent Events, one per piece of text, in chunked transfer encoding."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.chunked = self.request_version == "HTTP/1.1"
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # an HTTP/1.0 client: the end of the connection ends the stream
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.started = True
        head = envelope(job, new_id(job), int(time.time()), self.server.name, chunk=True)
        extra = {"usage": None} if job.include_usage else {}
        send = self.send_event
        if job.chat:  # the first chat chunk says who speaks
            first = choice(job, None, None, chunk=True)
            first["delta"] = {"role": "assistant", "content": ""}
            send({**head, "choices": [first], **extra})
        out = Outcome()
        for piece in run(self.server.engine, job.ids, job.sampling, out):
            send({**head, "choices": [choice(job, piece, None, True)], **extra})
        send({**head, "choices": [choice(job, None, out.finish_reason, True)], **extra})
        if job.include_usage:
            send({**head, "choices": [], "usage": usage(job, out)})
        self.write_chunk(b"data: [DONE]\n\n")
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def send_event(self, event: dict[str, Any]) -> None:
        self.write_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def send_json(
        self, status: int, body: dict[str, Any], close: bool = False, allow: str = ""
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 405 and allow:
            self.send_header("Allow", allow)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.started = True
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server finds itself (a bad request line, an unknown method), as JSON."""
        error = ApiError(code, message or explain or "bad request", kind="invalid_request_error")
        self.send_json(code, error.body(), close=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        probe = getattr(self, "path", "") == "/health" and str(code) == "200"
        if not probe:  # health probes come often and say nothing
            super().log_request(code, size)


def new_id(job: Job) -> str:
    return ("chatcmpl-" if job.chat else "cmpl-") + uuid.uuid4().hex


# --- main ----------------------------------------------------------------------------------


def announced(server: Server) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def load(args: argparse.Namespace) -> tuple[Engine, str]:
    """The engine and a startup line describing it; raises CheckpointError."""
    started = time.monotonic()
    file, state = read_checkpoint(args.checkpoint)
    model, vocab = build_model(file, state)
    cfg = model.cfg
    max_len = args.max_model_len or 4 * cfg.block_size
    engine = Engine(model, vocab, max_len, args.seed)
    line = (f"loaded model={args.served_model_name} checkpoint={file} step={state.get('step')} "
            f"params={model.num_params()} vocab={len(vocab)} block_size={cfg.block_size} "
            f"max_model_len={max_len} threads={torch.get_num_threads()} "
            f"load_s={time.monotonic() - started:.2f}")  # fmt: skip
    return engine, line


def on_signal(server: Server) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        if not server.stopping:
            server.stopping = True
            sys.stderr.write(f"{signal.Signals(signum).name}: stopping\n")
            # shutdown() waits for serve_forever(), which runs in this (the main) thread
            threading.Thread(target=server.shutdown, daemon=True).start()

    return handler


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):  # until the server runs: just leave
        signal.signal(sig, lambda signum, frame: sys.exit(0))
    torch.set_num_threads(args.threads)
    try:
        engine, line = load(args)
        server = Server((args.host, args.port), engine, args.served_model_name)
    except CheckpointError as e:
        print(f"serve.py: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"serve.py: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal(server))
    print(line, flush=True)
    print(f"AIF_SERVICE_URL={announced(server)}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()  # stop accepting
    if not server.wait_idle(args.drain_timeout):
        engine.cutoff.set()  # end generations now; their clients still get whole responses
        server.wait_idle(5.0)
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skips torch's interpreter teardown (about 0.4 s): nothing is left to do
