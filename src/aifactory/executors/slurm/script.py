"""Render an :class:`ExecJob` as an sbatch script, safely.

Two rules keep a job spec from reaching past its own job:

* Every value that lands on an ``#SBATCH`` line is checked against a strict pattern (no
  whitespace, quotes, ``%`` or control characters), so no value can start another directive,
  change a Slurm filename pattern or smuggle an option into sbatch's own tokenizer.
* Every value in the body is :func:`shlex.quote`-d, and a user script travels base64-encoded,
  so nothing in a spec is ever parsed as shell by the batch script itself. User paths are
  normalised and must stay inside the job's directory.
"""

from __future__ import annotations

import base64
import math
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from aifactory.errors import Invalid
from aifactory.executors.base import ExecJob

__all__ = [
    "GpuRequest",
    "RenderedScript",
    "ScriptOptions",
    "check_name",
    "job_name",
    "parse_job_name",
    "render_script",
]

GpuRequest = Literal["gpus-per-node", "gres"]

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# Node feature expressions (a&b, [a|b], a*2): no whitespace, quotes, % or $.
CONSTRAINT = re.compile(r"^[A-Za-z0-9_.&|,\[\]()*:!-]{1,256}$")
# Characters allowed in a path that reaches an #SBATCH line or the rendered body.
_PATH = re.compile(r"^/[A-Za-z0-9._/+=@,-]*$")
_NAME_PREFIX = "aif-"
RENDEZVOUS_PORT = 29500


@dataclass(frozen=True)
class ScriptOptions:
    """Site-side settings for rendering (never taken from the job spec).

    Attributes:
        job_root: Absolute directory on the cluster's shared file system; each job gets
            ``<job_root>/<job id>``.
        partition: Slurm partition, ``None`` for the cluster's default.
        account: Slurm account (the project's), ``None`` for the user's default.
        gpu_type: GPU type for typed requests (``"h100"``), ``None`` for untyped.
        gpu_request: ``"gpus-per-node"`` (``--gpus-per-node``) or ``"gres"`` (``--gres=gpu:``).
    """

    job_root: str
    partition: str | None = None
    account: str | None = None
    gpu_type: str | None = None
    gpu_request: GpuRequest = "gpus-per-node"


@dataclass(frozen=True)
class RenderedScript:
    """A batch script and the facts a REST submission needs beside it."""

    text: str
    name: str
    job_dir: str
    workdir: str
    stdout: str
    stderr: str
    nodes: int
    gpus_per_node: int
    time_limit_min: int | None
    partition: str | None
    account: str | None
    gpu_spec: str | None
    spec: ExecJob
    explicit_paths: tuple[str, ...] = field(default=())

    @property
    def time_min_min(self) -> int | None:
        """``--time-min`` in whole minutes."""
        return _minutes(self.spec.time_min_s)


def quote(value: str) -> str:
    """Shell-quote ``value`` so the script text never holds a raw control character.

    Plain values use :func:`shlex.quote`; values with newlines or other control characters use
    bash's ``$'...'`` form with escapes, so every line of the script is the renderer's own (no
    user newline can begin a line with ``#SBATCH`` for any tool that scans the whole file).
    """
    if not any(ord(c) < 32 or ord(c) == 127 for c in value):
        return shlex.quote(value)
    escaped = "".join(
        f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else {"\\": "\\\\", "'": "\\'"}.get(c, c)
        for c in value
    )
    return f"$'{escaped}'"


def _join(argv: Sequence[str]) -> str:
    return " ".join(quote(a) for a in argv)


def _bad(name: str, message: str) -> Invalid:
    return Invalid.field(name, "safe", message)


def check_name(field_name: str, value: str, pattern: re.Pattern[str] = SLURM_NAME) -> str:
    """Return ``value`` when it matches ``pattern``, else raise :class:`Invalid`."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(field_name, f"{value!r} must match {pattern.pattern}")
    return value


def job_name(job_id: str, attempt: int) -> str:
    """The Slurm job name carrying the idempotency key: ``aif-<job id>-<attempt>``."""
    return f"{_NAME_PREFIX}{check_name('job_id', job_id, JOB_ID)}-{attempt}"


def parse_job_name(name: str) -> tuple[str, int] | None:
    """Inverse of :func:`job_name` (the attempt never contains ``-``, so it is unambiguous)."""
    if not name.startswith(_NAME_PREFIX):
        return None
    job_id, _, attempt = name[len(_NAME_PREFIX) :].rpartition("-")
    if not attempt.isdigit() or not JOB_ID.fullmatch(job_id):
        return None
    return job_id, int(attempt)


def _inside(field_name: str, value: str, base: str) -> str:
    """``value`` (relative to ``base`` or absolute) normalised; must stay under ``base``."""
    if not isinstance(value, str) or not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _bad(field_name, "must be a non-empty path without control characters")
    path = posixpath.normpath(posixpath.join(base, value))
    if path != base and not path.startswith(base + "/"):
        raise _bad(field_name, f"{value!r} leaves the job directory {base}")
    if not _PATH.fullmatch(path):
        raise _bad(field_name, f"{value!r} may only use letters, digits and ._/+=@,-")
    return path


def _check_options(options: ScriptOptions) -> str:
    root = posixpath.normpath(options.job_root)
    if not options.job_root.startswith("/") or not _PATH.fullmatch(root):
        raise _bad("job_root", f"{options.job_root!r} must be an absolute plain path")
    for name in ("partition", "account", "gpu_type"):
        value = getattr(options, name)
        if value is not None:
            check_name(name, value)
    return root


def _minutes(seconds: float | None) -> int | None:
    """Slurm limits are whole minutes: round up, never below one."""
    return None if seconds is None else max(1, math.ceil(seconds / 60))


def _gpu_spec(spec: ExecJob, options: ScriptOptions) -> str | None:
    if spec.gpus_per_node == 0:
        return None
    typed = f"{options.gpu_type}:" if options.gpu_type else ""
    return f"{typed}{spec.gpus_per_node}"


def _resource_lines(r: RenderedScript, options: ScriptOptions) -> list[str]:
    """The resource directives, each only when the job asked (else the site's default)."""
    spec = r.spec
    lines = [f"--nodes={r.nodes}"]
    if spec.tasks_per_node is not None:
        lines.append(f"--ntasks-per-node={spec.tasks_per_node}")
    if spec.cpus_per_task is not None:
        lines.append(f"--cpus-per-task={spec.cpus_per_task}")
    if r.gpu_spec and options.gpu_request == "gres":
        lines.append(f"--gres=gpu:{r.gpu_spec}")
    elif r.gpu_spec:
        lines.append(f"--gpus-per-node={r.gpu_spec}")
    memory = {"mem": spec.memory_mb, "mem-per-cpu": spec.memory_per_cpu_mb}
    memory["mem-per-gpu"] = spec.memory_per_gpu_mb
    # --mem=0 is the whole node's memory; other values are MiB.
    lines += [f"--{k}={v}M" if v else f"--{k}=0" for k, v in memory.items() if v is not None]
    if spec.exclusive:
        lines.append("--exclusive")
    if spec.constraint:
        lines.append(f"--constraint={spec.constraint}")
    if r.time_limit_min is not None:
        lines.append(f"--time={r.time_limit_min}")
    if r.time_min_min is not None:
        lines.append(f"--time-min={r.time_min_min}")
    return lines


def _directives(r: RenderedScript, options: ScriptOptions) -> list[str]:
    # --no-requeue: managed retry owns recovery, so every run is a platform attempt, charged.
    lines = [f"--job-name={r.name}", "--no-requeue", *_resource_lines(r, options)]
    if r.spec.array_task is not None:
        # A one-task array: Slurm itself sets SLURM_ARRAY_TASK_ID and shows ArrayTaskId.
        lines.append(f"--array={r.spec.array_task}")
    lines += [f"--output={r.stdout}", f"--error={r.stderr}", "--open-mode=append"]
    lines.append(f"--chdir={posixpath.normpath(options.job_root)}")
    if r.partition:
        lines.append(f"--partition={r.partition}")
    if r.account:
        lines.append(f"--account={r.account}")
    return ["#!/bin/bash", *(f"#SBATCH {line}" for line in lines)]


def _launch(spec: ExecJob, r: RenderedScript) -> list[str]:
    if spec.script is not None:
        # The user's script is the batch step, as sbatch runs it: once, under its own
        # interpreter line, with its arguments; its own srun/torchrun lines launch the tasks.
        script_file = posixpath.join(r.job_dir, f".aif-attempt-{spec.attempt}.sh")
        encoded = base64.b64encode(spec.script.encode()).decode()
        run = [script_file] if spec.script.startswith("#!") else ["/bin/bash", script_file]
        # base64 text cannot contain quotes or newlines: the user's script is never shell here.
        return [
            f"printf '%s' {shlex.quote(encoded)} | base64 -d > {shlex.quote(script_file)}",
            f"chmod 700 {shlex.quote(script_file)}",
            "exec " + _join([*run, *spec.args]),
        ]
    tasks = spec.tasks_per_node or 1
    srun = ["srun", f"--nodes={r.nodes}", f"--ntasks-per-node={tasks}", "--kill-on-bad-exit=1"]
    argv: Sequence[str] = spec.argv or ()
    if spec.launcher == "torchrun":
        srun[2] = "--ntasks-per-node=1"  # one torchrun per node starts the per-GPU workers
        rdzv = ["--rdzv-backend=c10d", '--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"']
        torch = ["python3", "-m", "torch.distributed.run", f"--nnodes={r.nodes}"]
        per_node = spec.tasks_per_node or max(spec.gpus_per_node, 1)
        torch += [f"--nproc-per-node={per_node}", "--rdzv-id=$SLURM_JOB_ID"]
        # The endpoint must expand in the batch shell, so it is the one unquoted word.
        return [
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
            f"MASTER_PORT={RENDEZVOUS_PORT}",
            "export MASTER_ADDR MASTER_PORT",
            " ".join([_join(srun + torch), *rdzv, "--no-python", _join(argv)]),
        ]
    return [_join([*srun, *argv])]


def _paths(spec: ExecJob, root: str, job_dir: str) -> tuple[str, str, str, tuple[str, ...]]:
    workdir = _inside("workdir", spec.workdir, job_dir) if spec.workdir else job_dir
    key = f"{_NAME_PREFIX}{spec.job_id}-{spec.attempt}"
    log_dir = _inside("log_dir", spec.log_dir, job_dir) if spec.log_dir else None
    default_out = posixpath.join(log_dir, "stdout.log") if log_dir else f"{root}/{key}.out"
    default_err = posixpath.join(log_dir, "stderr.log") if log_dir else f"{root}/{key}.err"
    stdout = _inside("stdout_path", spec.stdout_path, job_dir) if spec.stdout_path else default_out
    stderr = _inside("stderr_path", spec.stderr_path, job_dir) if spec.stderr_path else default_err
    # Directories Slurm needs before the job starts (it opens output files itself).
    explicit = tuple(
        sorted({posixpath.dirname(p) for p in (stdout, stderr) if p.startswith(job_dir + "/")})
    )
    return workdir, stdout, stderr, explicit


def render_script(spec: ExecJob, options: ScriptOptions) -> RenderedScript:
    """Render ``spec`` as a batch script for ``sbatch`` (script on stdin) or slurmrestd.

    Raises:
        Invalid: A value is unsafe (pattern, control character, path outside the job dir) or
            the spec asks for something the renderer cannot express.
    """
    root = _check_options(options)
    name = job_name(spec.job_id, spec.attempt)
    job_dir = f"{root}/{spec.job_id}"
    if spec.argv is not None and spec.argv[0].startswith("-"):
        raise _bad("argv", "the program name must not start with '-'")
    if spec.launcher == "torchrun" and spec.argv is None:
        raise Invalid.field("launcher", "needs_argv", "torchrun runs argv, not a script")
    workdir, stdout, stderr, explicit = _paths(spec, root, job_dir)
    if spec.constraint is not None:
        check_name("constraint", spec.constraint, CONSTRAINT)
    rendered = RenderedScript(
        text="",
        name=name,
        job_dir=job_dir,
        workdir=workdir,
        stdout=stdout,
        stderr=stderr,
        nodes=spec.nodes,
        gpus_per_node=spec.gpus_per_node,
        time_limit_min=_minutes(spec.time_limit_s),
        partition=options.partition,
        account=options.account,
        gpu_spec=_gpu_spec(spec, options),
        spec=spec,
        explicit_paths=explicit,
    )
    body = [
        "set -eu",
        "umask 077",
        f"mkdir -p -- {shlex.quote(job_dir)} {shlex.quote(workdir)}",
        f"cd -- {shlex.quote(workdir)}",
        f"export AIF_JOB_ID={shlex.quote(spec.job_id)} AIF_ATTEMPT={spec.attempt}",
        f"export AIF_JOB_DIR={shlex.quote(job_dir)}",
        *(f"export {key}={quote(value)}" for key, value in sorted(spec.env.items())),
        *_launch(spec, rendered),
    ]
    # One { ... } group: bash parses it whole before running any of it, so a script cut short
    # in transit (an ssh connection dropped while sbatch read it) is a syntax error, not a
    # half-run job.
    text = "\n".join([*_directives(rendered, options), "", "{", *body, "}", ""])
    return RenderedScript(**{**rendered.__dict__, "text": text})
