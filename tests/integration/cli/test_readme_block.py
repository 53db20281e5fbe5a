"""The README's "To keep the federation running" block, run command by command as written,
in the data directory `make demo` used just before (the demo keeps its own data under it, so the
block's people, organisation, proposal 1 and job 1 are the block's own), then the demo again.

Only these mechanical substitutions separate a run here from a newcomer pasting the block:

- ``.venv/bin/aif`` and ``.venv/bin/python`` are the ones of the virtualenv running the tests;
- every command gets a scratch ``AIF_DATA_DIR`` and ``AIF_CONFIG_DIR``, a free ``AIF_PORT``, a
  wide ``COLUMNS`` (so no table wraps a project code) and no inherited ``AIF_URL``/``AIF_TOKEN``/
  ``AIF_HOST``/``AIF_DATABASE_URL``; it runs in a scratch directory holding a link to the
  checkout's ``examples/`` (so ``usage.csv`` and job output stay out of the checkout);
- a command ending in ``&`` starts in the background, and the next one waits for it to answer
  ``GET /api/v1/health``; ``kill %1`` stops it (and the test always stops it at the end);
- ``<NAME-token>`` is the token ``aif admin create-token NAME`` printed; ``<your-project-code>``
  is the project code ``aif projects list`` printed;
- a command that asks for a secret reads it from stdin: ``aif login`` the token of the user its
  comment names ("paste NAME's token"), ``aif admin set-password`` a password, twice.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from aifactory.server import free_port
from aifactory.testing.demo import run_demo
from aifactory.testing.serving import stop_group, wait_healthy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
PROGRAMS = {
    ".venv/bin/aif": str(Path(sys.executable).parent / "aif"),
    ".venv/bin/python": sys.executable,
}
MARKER = "To keep the federation running:"
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
TOKEN_SLOT = re.compile(r"<([a-z]+)-token>")
CODE_SLOT = "<your-project-code>"
PROJECT_CODE = re.compile(r"EHPC-AIF-\d{4}[A-Z]{2}\d{2}-\d{4}")
CEILING_S = 300  # generous: a slow machine only waits longer, it never fails for it


@dataclass
class Command:
    """One command of the block: its words, any leading VAR=value, and its raw text."""

    argv: list[str]
    text: str
    env: dict[str, str] = field(default_factory=dict)
    background: bool = False


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, f"README.md lost the sentence {MARKER!r}"
    after = text.split(MARKER, 1)[1]
    assert after.lstrip().startswith("```bash"), "the marker must be followed by a bash block"
    return after.split("```bash\n", 1)[1].split("\n```", 1)[0]


def parse(block: str) -> list[Command]:
    """Commands as a shell reads them: continued lines joined, quotes across lines kept."""
    commands: list[Command] = []
    pending = ""
    for line in block.splitlines():
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # a quotation goes on over the next line
            continue
        if words:
            commands.append(_command(words, pending))
        pending = ""
    assert not pending.strip(), f"unfinished command at the end of the block: {pending!r}"
    return commands


def _command(words: list[str], text: str) -> Command:
    env: dict[str, str] = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    background = words[-1] == "&"
    return Command(words[:-1] if background else words, text, env, background)


@dataclass
class Story:
    """Runs the commands in order, remembering what later commands refer to."""

    cwd: Path
    env: dict[str, str]
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    server: subprocess.Popen[bytes] | None = None
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def run(self, cmd: Command) -> str:
        if cmd.argv == ["kill", "%1"]:
            assert self.server is not None, "kill %1 with no server in the background"
            self.stop_server()
            return ""
        argv = [self._fill(word) for word in cmd.argv]
        assert argv[0] in PROGRAMS, f"the block may only run aif and python: {cmd.text}"
        argv[0] = PROGRAMS[argv[0]]
        env = {**self.env, **{k: self._fill(v) for k, v in cmd.env.items()}}
        if cmd.background:
            self._start_server(argv, env)
            return ""
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=env,
            input=self._stdin(cmd),
            capture_output=True,
            text=True,
            timeout=CEILING_S,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{cmd.text.strip()}\nexit {done.returncode}:\n{output}"
        self._remember(argv, done.stdout)
        self.outputs.append((cmd.text.strip(), output))
        return output

    def _fill(self, word: str) -> str:
        word = TOKEN_SLOT.sub(lambda m: self.tokens[m.group(1)], word)
        if CODE_SLOT in word:
            assert self.code, "the project code is used before `aif projects list` showed it"
            word = word.replace(CODE_SLOT, self.code)
        assert not re.search(r"<[^>]+>", word), f"unknown placeholder in {word!r}"
        return word

    def _stdin(self, cmd: Command) -> str | None:
        if cmd.argv[1:2] == ["login"] and "--token" not in cmd.argv:
            who = re.search(r"paste (\w+)'s token", cmd.text)
            assert who, f"the login line must say whose token to paste: {cmd.text}"
            return self.tokens[who.group(1)] + "\n"
        if cmd.argv[1:3] == ["admin", "set-password"]:
            return "a long portal password\n" * 2
        return None

    def _remember(self, argv: list[str], stdout: str) -> None:
        if argv[1:3] == ["admin", "create-token"]:
            self.tokens[argv[3]] = stdout.strip().splitlines()[-1].strip()
        if argv[1:3] == ["projects", "list"]:
            found = PROJECT_CODE.search(stdout)
            assert found, f"no project code in:\n{stdout}"
            self.code = found.group(0)

    def _start_server(self, argv: list[str], env: dict[str, str]) -> None:
        log = (self.cwd / "serve.log").open("wb")
        self.server = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_healthy(self.server, self.url, self.cwd / "serve.log", CEILING_S)

    def server_log(self) -> str:
        path = self.cwd / "serve.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop_server(self) -> None:
        if self.server is not None:
            stop_group(self.server)


def test_readme_block_parses_into_known_commands() -> None:
    commands = parse(readme_block())
    programs = {c.argv[0] for c in commands if c.argv != ["kill", "%1"]}
    assert programs <= set(PROGRAMS)
    assert sum(c.background for c in commands) == 1
    assert any(c.argv[1:2] == ["submit"] and "--follow" in c.argv for c in commands)


@pytest.mark.timeout(1800)  # a ceiling only: every step fails on its own when it stalls
def test_readme_block_after_the_demo_runs_to_a_completed_charged_job(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AIF_URL", "AIF_TOKEN", "AIF_HOST", "AIF_DATABASE_URL", "AIF_SITES_FILE")
    }
    env.update(
        AIF_DATA_DIR=str(tmp_path / "data"),
        AIF_CONFIG_DIR=str(tmp_path / "config"),
        AIF_PORT=str(port),
        COLUMNS="200",
    )
    story = Story(cwd=work, env=env, url=f"http://127.0.0.1:{port}")
    run_demo(env)  # `make demo` first, in the same data directory, as the README says
    try:
        for cmd in parse(readme_block()):
            output = story.run(cmd)
            if cmd.argv[1:2] == ["submit"]:
                assert "hello from GPUs" in output
                assert "completed (exit code 0)" in output
                assert_settled(story, job_id=int(output.split("job ", 1)[1].split()[0]))
    except BaseException:
        print("--- aif serve log ---\n" + story.server_log())
        raise
    finally:
        story.stop_server()
    assert story.server is not None and story.server.returncode is not None
    saved = (tmp_path / "config" / "config.json").read_text()
    assert f"http://127.0.0.1:{port}" in saved  # bootstrap and login used AIF_PORT
    assert (work / "usage.csv").read_text().startswith("funding,")
    run_demo(env)  # and the demo again, after the block: nothing collides either way
    assert (tmp_path / "data" / "demo" / "aifactory.db").exists()
    assert (tmp_path / "data" / "aifactory.db").exists()


def assert_settled(story: Story, job_id: int) -> None:
    """The job completed, its reservation was released and exactly its usage was charged."""
    headers = {"Authorization": f"Bearer {story.tokens['anna']}"}
    with httpx.Client(base_url=f"{story.url}/api/v1", headers=headers, timeout=30) as api:
        job = api.get(f"/jobs/{job_id}").json()
        assert job["state"] == "completed", job
        assert job["project"] == story.code
        project = api.get(f"/projects/{story.code}").json()
        allocation = project["allocations"][0]
        ledger = api.get(f"/allocations/{allocation['id']}/ledger").json()
    kinds = [e["kind"] for e in ledger]
    assert "reserve" in kinds and "release" in kinds, ledger
    assert Decimal(allocation["reserved"]) == 0
    charged = sum(Decimal(e["gpu_hours"]) for e in ledger if e["kind"] == "charge")
    assert Decimal(allocation["used"]) == Decimal(job["charged_gpu_hours"]) == abs(charged)
