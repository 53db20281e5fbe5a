"""Import an existing batch script: its ``#SBATCH`` directives become a platform job spec.

Users bring the scripts they have (``aif submit train.sbatch``). Like sbatch itself, directives
are read only up to the first command line; options the platform cannot honour are returned as
warnings rather than silently dropped.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from typing import Any

from aifactory.errors import Invalid

__all__ = ["import_sbatch", "parse_memory_gb", "parse_time_limit"]

_SHORT = {"-N": "nodes", "-n": "ntasks", "-t": "time", "-J": "job-name", "-o": "output"}
_SHORT |= {"-e": "error", "-c": "cpus-per-task", "-G": "gpus"}
_KNOWN = {
    "job-name",
    "nodes",
    "ntasks",
    "ntasks-per-node",
    "gpus",
    "gpus-per-node",
    "gres",
    "time",
    "mem",
    "cpus-per-task",
    "output",
    "error",
}
_MEM_UNITS = {"K": 1 / 1024 / 1024, "M": 1 / 1024, "G": 1.0, "T": 1024.0}
_UNLIMITED = {"INFINITE", "UNLIMITED", "-1"}


def _bad(option: str, value: str, why: str) -> Invalid:
    return Invalid.field(f"sbatch.{option}", "format", f"{value!r}: {why}")


def parse_time_limit(value: str) -> int | None:
    """Seconds of a Slurm time limit; ``None`` for ``INFINITE``/``UNLIMITED``.

    Accepts every sbatch form: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    """
    text = value.strip().upper()
    if text in _UNLIMITED:
        return None
    days, has_days, rest = text.partition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if not all(p.isdigit() for p in [days, *parts]) or len(parts) > 3:
        raise _bad("time", value, "not a Slurm time (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)")
    nums = [int(p) for p in parts]
    # After a day count the first field is hours; without one a lone number is minutes.
    without_days = {1: [0, nums[0], 0], 2: [0, *nums], 3: nums}
    hms = [*nums, 0, 0][:3] if has_days else without_days[len(nums)]
    return int(days) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]


def parse_memory_gb(value: str) -> float:
    """GiB of an sbatch ``--mem`` value (``16G``, ``16000`` = MiB, ``512M``, ``1T``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", value.strip().upper())
    if match is None:
        raise _bad("mem", value, "expected a number with an optional K/M/G/T unit")
    return round(float(match.group(1)) * _MEM_UNITS[match.group(2) or "M"], 3)


def _gpu_count(option: str, value: str) -> tuple[int, str | None]:
    """``4`` / ``h100:4`` (gpus) or ``gpu`` / ``gpu:4`` / ``gpu:h100:4`` (gres)."""
    parts = value.split(",")[0].split(":")
    if option == "gres":
        if parts[0] != "gpu":
            raise _bad(option, value, "only gpu gres can be imported")
        parts = parts[1:] or ["1"]
    if not parts[-1].isdigit() or len(parts) > 2:
        raise _bad(option, value, "expected [type:]count")
    return int(parts[-1]), parts[0] if len(parts) == 2 else None


def _directive_tokens(line: str) -> list[str]:
    text = line[len("#SBATCH") :].split(" #", 1)[0]
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise Invalid.field("sbatch", "syntax", f"cannot parse {line!r}: {exc}") from exc


def _options(tokens: list[str]) -> list[tuple[str, str]]:
    """(long option name, value) pairs from one directive's tokens."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                i, value = i + 1, tokens[i + 1]
        elif token[:2] in _SHORT:
            name, value = _SHORT[token[:2]], token[2:]
            if not value and i + 1 < len(tokens):
                i, value = i + 1, tokens[i + 1]
        else:
            name, value = token.lstrip("-"), ""
        pairs.append((name, value))
        i += 1
    return pairs


def _split(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Directive pairs and the remaining body lines (directives end at the first command)."""
    pairs: list[tuple[str, str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#SBATCH"):
            pairs.extend(_options(_directive_tokens(stripped)))
        elif stripped and not stripped.startswith("#"):
            return pairs, lines[index:]
    return pairs, []


def _resources(opts: dict[str, str], warnings: list[str]) -> dict[str, Any]:
    nodes = int(opts.get("nodes", "1").split("-")[0] or 1)
    per_node, model = 0, None
    if "gpus-per-node" in opts:
        per_node, model = _gpu_count("gpus-per-node", opts["gpus-per-node"])
    elif "gres" in opts:
        per_node, model = _gpu_count("gres", opts["gres"])
    elif "gpus" in opts:
        total, model = _gpu_count("gpus", opts["gpus"])
        per_node = math.ceil(total / nodes)
        if per_node * nodes != total:
            warnings.append(f"--gpus={total} over {nodes} nodes rounded up to {per_node} per node")
    tasks = int(opts.get("ntasks-per-node") or math.ceil(int(opts.get("ntasks", "1")) / nodes))
    resources: dict[str, Any] = {
        "nodes": nodes,
        "gpus_per_node": per_node,
        "cpus": tasks * int(opts.get("cpus-per-task", "1")),
        "memory_gb": parse_memory_gb(opts["mem"]) if "mem" in opts else None,
        "time_limit_s": parse_time_limit(opts["time"]) if "time" in opts else None,
    }
    if model is not None:
        resources["gpu_model"] = model
    return resources


_INTEGER_OPTIONS = ("ntasks", "ntasks-per-node", "cpus-per-task")
_CHECKS: dict[str, Callable[[str], bool]] = {
    "nodes": lambda v: re.fullmatch(r"\d+(-\d+)?", v) is not None,
    **{name: str.isdigit for name in _INTEGER_OPTIONS},
}


def import_sbatch(text: str) -> tuple[dict[str, Any], list[str]]:
    """Turn a batch script into a job spec.

    Args:
        text: The batch script.

    Returns:
        ``(spec, warnings)``: ``spec`` is ``{name, resources: {nodes, gpus_per_node,
        gpu_model?, cpus, memory_gb, time_limit_s}, command, output, error}`` and
        ``warnings`` names every directive that was ignored or adjusted.

    Raises:
        Invalid: A known directive has a value Slurm itself would refuse.
    """
    pairs, body = _split(text)
    warnings: list[str] = []
    opts: dict[str, str] = {}
    for name, value in pairs:
        if name not in _KNOWN:
            warnings.append(
                f"#SBATCH --{name}{'=' + value if value else ''} is not supported; ignored"
            )
            continue
        if name in _CHECKS and not _CHECKS[name](value):
            raise _bad(name, value, "expected a positive integer")
        opts[name] = value
    spec = {
        "name": opts.get("job-name"),
        "resources": _resources(opts, warnings),
        "command": "\n".join(body).strip() + "\n" if body else "",
        "output": opts.get("output"),
        "error": opts.get("error"),
    }
    return spec, warnings
