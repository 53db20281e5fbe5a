"""The job spec users submit once (YAML or JSON), validated field by field. Pure, no I/O."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from aifactory.errors import FieldError, Invalid

MAX_SPEC_BYTES = 1024 * 1024
_DURATION = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_SAFE_TEXT = r"^[^\x00-\x1f\x7f]*$"  # one line, no control characters
#: A site as placement names it: FACTORY, FACTORY/SYSTEM or FACTORY/SYSTEM/PARTITION.
_SITE_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._\-]*(/[A-Za-z0-9][A-Za-z0-9 ._\-]*){0,2}$"
# Slurm feature expressions: names joined by & | , with [] () * and counts; no spaces or quotes.
_CONSTRAINT = r"^[A-Za-z0-9_.&|,\[\]()*:!-]+$"
# Slurm array syntax: 0-9, 1,3,5-7, 0-15:4, each optionally with %N (tasks at a time).
_ARRAY = re.compile(r"^(\d+(-\d+(:\d+)?)?)(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")
MAX_ARRAY_TASKS = 1000
MAX_ARRAY_INDEX = 1_000_000
SInt = Annotated[int, Strict()]
SFloat = Annotated[float, Strict()]
Line = Annotated[str, Field(max_length=4096, pattern=_SAFE_TEXT)]
RetryOn = Literal["node_failed", "timed_out", "preempted", "failed"]
DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("node_failed", "timed_out", "preempted")


def parse_duration(value: str | int) -> int:
    """Seconds from ``3600``, ``"90m"``, ``"2h"``, ``"1d"``, ``"HH:MM:SS"``, ``"D-HH:MM:SS"``.

    Raises:
        ValueError: Not a duration (pydantic turns it into a field error).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("a duration is whole seconds or text like 90m, 2h or 01:30:00")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip().lower()
        match = _DURATION.match(text)
        if match:
            parts = {k: int(v or 0) for k, v in match.groupdict().items()}
            seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
        elif text[:-1].isdigit() and text[-1:] in _UNITS:
            seconds = int(text[:-1]) * _UNITS[text[-1]]
        elif text.isdigit():
            seconds = int(text)
        else:
            raise ValueError(f"{value!r} is not a duration like 3600, 90m, 2h or 01:30:00")
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def array_tasks(text: str) -> tuple[list[int], int | None]:
    """Task indices and concurrency limit of a Slurm ``--array`` value (``"0-9%2"``).

    Raises:
        ValueError: Not Slurm array syntax, more than ``MAX_ARRAY_TASKS`` tasks, an index over
            ``MAX_ARRAY_INDEX``, a range that runs backwards, or a ``%0`` limit.
    """
    value = text.strip()
    if not _ARRAY.match(value):
        raise ValueError(f"{text!r} is not an array like 0-9, 1,3,5-7, 0-15:4 or 0-9%2")
    ranges, _, limit_text = value.partition("%")
    indices: set[int] = set()
    for part in ranges.split(","):
        bounds, _, step_text = part.partition(":")
        first, _, last = bounds.partition("-")
        lo, hi, step = int(first), int(last or first), int(step_text or 1)
        if hi < lo or step < 1:
            raise ValueError(f"{part!r}: a range runs upwards with a step of at least 1")
        if hi > MAX_ARRAY_INDEX:
            raise ValueError(f"task indices go up to {MAX_ARRAY_INDEX}")
        indices.update(range(lo, hi + 1, step))
        if len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(f"an array has at most {MAX_ARRAY_TASKS} tasks")
    limit = int(limit_text) if limit_text else None
    if limit == 0:
        raise ValueError("%0 would never run a task; the limit is at least 1")
    return sorted(indices), limit


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Resources(_Spec):
    """What one job (one array task) holds; ``None`` leaves a value to the site's default.

    ``tasks_per_node`` is how many tasks the job's own ``srun``/``torchrun`` may start per node
    (the batch script itself runs once, as Slurm runs it); memory is given one way at most.
    """

    nodes: SInt = Field(default=1, ge=1, le=4096)
    gpus_per_node: SInt = Field(default=1, ge=0, le=64)
    gpu_model: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")
    min_gpu_memory_gb: SFloat | None = Field(default=None, gt=0, le=10_000)
    tasks_per_node: SInt | None = Field(default=None, ge=1, le=1024)
    cpus_per_task: SInt | None = Field(default=None, ge=1, le=10_000)
    cpus: SInt | None = Field(default=None, ge=1, le=100_000)
    memory_gb: SFloat | None = Field(default=None, gt=0, le=1_000_000)
    memory_per_cpu_gb: SFloat | None = Field(default=None, gt=0, le=100_000)
    memory_per_gpu_gb: SFloat | None = Field(default=None, gt=0, le=100_000)
    whole_node_memory: bool = False
    exclusive: bool = False
    constraint: str | None = Field(default=None, max_length=256, pattern=_CONSTRAINT)
    time_limit: Annotated[int, Field(ge=1, le=366 * 86400)] = 3600
    time_min: Annotated[int, Field(ge=1, le=366 * 86400)] | None = None

    @field_validator("time_limit", "time_min", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int | None:
        if value is None:
            return None
        if not isinstance(value, str | int):
            raise ValueError("a duration: seconds or text like 90m or 01:30:00")
        return parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> Resources:
        given = [
            name
            for name in ("memory_gb", "memory_per_cpu_gb", "memory_per_gpu_gb")
            if getattr(self, name) is not None
        ] + (["whole_node_memory"] if self.whole_node_memory else [])
        if len(given) > 1:
            raise ValueError(f"give memory one way only, not {' and '.join(given)}")
        if self.time_min is not None and self.time_min > self.time_limit:
            raise ValueError("time_min must not exceed time_limit")
        return self

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class Retry(_Spec):
    max_attempts: SInt = Field(default=1, ge=1, le=20)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true.
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    on: list[RetryOn] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))


class JobSpec(_Spec):
    """What to run, for which project, on what hardware, under which constraints."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    project: str = Field(min_length=1, max_length=32)
    resources: Resources = Field(default_factory=Resources)
    command: str | list[str] | None = Field(
        default=None, description="a string (split like a shell would, never run by one) or a list"
    )
    # Kept byte for byte (no whitespace stripping): it runs as the user wrote it.
    script: Annotated[str, StringConstraints(strip_whitespace=False)] | None = Field(
        default=None, max_length=512 * 1024
    )
    environment: dict[Annotated[str, Field(pattern=_ENV_NAME)], Line] = Field(default_factory=dict)
    workdir: str | None = Field(default=None, max_length=1024, pattern=_SAFE_TEXT)
    container_image: str | None = Field(default=None, max_length=256, pattern=r"^[\w./:@\-]+$")
    launcher: Literal["none", "torchrun"] = "none"
    allowed_countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] | None = None
    prefer_sites: list[Annotated[str, Field(max_length=200, pattern=_SITE_NAME)]] = Field(
        default_factory=list,
        max_length=16,
        description="preferred sites, best first: FACTORY, FACTORY/SYSTEM or "
        "FACTORY/SYSTEM/PARTITION; one wins when it starts at most 30 min after the soonest",
    )
    checkpoint_dir: str | None = Field(default=None, max_length=1024, pattern=_SAFE_TEXT)
    retry: Retry = Field(default_factory=Retry)
    args: list[Line] = Field(
        default_factory=list, max_length=256, description="arguments given to the script"
    )
    array: str | None = Field(
        default=None, max_length=1024, description="Slurm array syntax, e.g. 0-9%2 or 1,3,5-7"
    )

    @field_validator("workdir")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        # The job works inside its own directory: never absolute, never climbing out of it.
        # (A checkpoint directory may be absolute: shared project storage at the site.)
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a path relative to the job directory, without '..'")
        return value

    @field_validator("array")
    @classmethod
    def _array(cls, value: str | None) -> str | None:
        if value is not None:
            array_tasks(value)  # raises with the rule broken
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command_shape(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, list) and all(isinstance(v, str) for v in items)
        if value is not None and not ok:
            raise ValueError("must be a string or a list of strings")
        if value is not None and any("\x00" in v or len(v) > 128 * 1024 for v in items):
            raise ValueError("arguments must be text without NUL, at most 128 KiB each")
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:  # e.g. an unbalanced quote: say so now, not at hand-over
                raise ValueError(
                    f"cannot be split into arguments like a shell would: {exc}"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_command(self) -> JobSpec:
        if (self.command is None) == (self.script is None):
            raise ValueError("give exactly one of command and script")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command must name a program")
        if self.script is not None and "\x00" in self.script:
            raise ValueError("script must not contain NUL")
        if self.args and self.script is None:
            raise ValueError("args are given to a script; put a command's arguments in command")
        return self

    def tasks(self) -> tuple[list[int], int | None]:
        """The array's task indices and its ``%`` limit; ``([], None)`` for a plain job."""
        return array_tasks(self.array) if self.array else ([], None)

    def argv(self) -> list[str] | None:
        """The command as an argument vector (a string is split with shell-like quoting)."""
        if self.command is None:
            return None
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


def parse_spec(data: Any) -> JobSpec:
    """Validate a parsed YAML/JSON document as a job spec.

    Raises:
        Invalid: One entry per broken rule, naming the field (``resources.nodes`` ...).
    """
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        details = [
            FieldError(".".join(str(p) for p in e["loc"]) or "spec", e["type"], e["msg"])
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details)
        raise Invalid(f"invalid job spec: {summary}", details) from None
