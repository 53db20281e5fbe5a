"""Values of sbatch options, read as Slurm 22.05 reads them.

Each ``read_*`` function raises :class:`ValueError` with the rule broken (the importer turns it
into a refusal naming the directive); :func:`parse_time_limit` and :func:`parse_memory_gb` are
the public forms that raise :class:`~aifactory.errors.Invalid`.
"""

from __future__ import annotations

import re

from aifactory.errors import Invalid

__all__ = [
    "GpuCount",
    "parse_memory_gb",
    "parse_time_limit",
    "read_count",
    "read_gpus",
    "read_gres",
    "read_memory_mb",
    "read_nodes",
    "read_seconds",
]

GpuCount = tuple[int, str | None]
_UNLIMITED = {"INFINITE", "UNLIMITED", "-1"}
# parse_time.c: days-[hours[:minutes[:seconds]]], or minutes[:seconds], or hours:minutes:seconds.
_WITH_DAYS = re.compile(r"^(\d+)-(?:(\d+)(?::(\d+)(?::(\d+))?)?)?$")
_WITHOUT_DAYS = re.compile(r"^(\d+)(?::(\d+))?(?::(\d+))?$")
_TIME_FORMS = "M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, INFINITE or UNLIMITED"
# proc_args.c str_to_mbytes: a whole number, optionally K, M, G or T (then optionally B); MiB.
_MEMORY = re.compile(r"^(\d+)(?:([KkMmGgTt])[Bb]?)?$")
_MIB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_NODES = re.compile(r"^(\d+)([kK]?)(?:-(\d+)([kK]?))?$")
_GPU = re.compile(r"^(?:([A-Za-z0-9._-]+):)?(\d+)$")


def read_seconds(value: str) -> int | None:
    """Seconds of a Slurm time; ``None`` for no limit (``INFINITE``, ``UNLIMITED``, ``-1``,
    and ``0``, which sbatch reads as no limit too)."""
    text = value.strip()
    if text.upper() in _UNLIMITED:
        return None
    days = _WITH_DAYS.match(text)
    plain = _WITHOUT_DAYS.match(text)
    if days:
        d, h, m, s = (int(g or 0) for g in days.groups())
    elif plain and plain.group(3) is not None:
        d, (h, m, s) = 0, (int(g) for g in plain.groups())
    elif plain:
        d, h, m, s = 0, 0, int(plain.group(1)), int(plain.group(2) or 0)
    else:
        raise ValueError(f"{value!r} is not a Slurm time ({_TIME_FORMS})")
    seconds = d * 86400 + h * 3600 + m * 60 + s
    return seconds or None


def parse_time_limit(value: str) -> int | None:
    """Seconds of a Slurm time limit; ``None`` for ``INFINITE``/``UNLIMITED`` (and ``0``).

    Accepts every sbatch form: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.

    Raises:
        Invalid: Not a Slurm time.
    """
    try:
        return read_seconds(value)
    except ValueError as exc:
        raise Invalid.field("sbatch.--time", "format", str(exc)) from None


def read_memory_mb(value: str) -> int:
    """MiB of an sbatch memory value (``16G``, ``16000`` = MiB, ``512M``, ``1T``, ``64KB``);
    kibibytes round up to whole MiB as Slurm does."""
    match = _MEMORY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r}: a whole number with an optional K, M, G or T unit (MiB)")
    number, unit = int(match.group(1)), (match.group(2) or "m").lower()
    return -(-number // 1024) if unit == "k" else int(number * _MIB[unit])


def parse_memory_gb(value: str) -> float:
    """GiB of an sbatch ``--mem`` value (``16G``, ``16000`` = MiB, ``512M``, ``1T``).

    Raises:
        Invalid: Not a Slurm memory size.
    """
    try:
        return read_memory_mb(value) / 1024
    except ValueError as exc:
        raise Invalid.field("sbatch.--mem", "format", str(exc)) from None


def read_count(value: str) -> int:
    """A positive whole number (``--ntasks``, ``--cpus-per-task`` ...)."""
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{value!r}: a whole number of at least 1")
    return int(text)


def read_nodes(value: str) -> tuple[int, int]:
    """``(min, max)`` of a node count: ``4``, ``2-4`` (``k`` multiplies by 1024)."""
    match = _NODES.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r}: a node count like 4 or a range like 2-4")
    low = int(match.group(1)) * (1024 if match.group(2) else 1)
    high = low if match.group(3) is None else int(match.group(3)) * (1024 if match.group(4) else 1)
    if low < 1 or high < low:
        raise ValueError(f"{value!r}: at least 1 node, and a range must not run backwards")
    return low, high


def read_gpus(value: str) -> GpuCount:
    """``(count, type)`` of ``--gpus``, ``--gpus-per-node`` or ``--gpus-per-task``:
    ``4`` or ``h100:4``; one GPU type only."""
    match = _GPU.match(value.strip())
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"{value!r}: a GPU count like 4 or h100:4 (one GPU type)")
    return int(match.group(2)), match.group(1)


def read_gres(value: str) -> GpuCount:
    """``(GPUs per node, type)`` of ``--gres``: ``gpu``, ``gpu:4``, ``gpu:a100:4``, ``gpu:a100``.

    Only GPUs can be placed by the platform: any other generic resource is an error.
    """
    parts = value.strip().split(",")
    gpus = [p for p in parts if p.split(":")[0] == "gpu"]
    others = [p for p in parts if p.split(":")[0] != "gpu"]
    if others:
        raise ValueError(f"{', '.join(others)}: only GPUs (gpu[:type][:count]) can be placed")
    if len(gpus) != 1:
        raise ValueError(f"{value!r}: give one gpu[:type][:count]")
    fields = gpus[0].split(":")[1:]
    if len(fields) > 2 or not all(fields):
        raise ValueError(f"{value!r}: expected gpu[:type][:count]")
    count = fields[-1] if fields and fields[-1].isdigit() else "1"
    kind = fields[0] if fields and not fields[0].isdigit() else None
    if (len(fields) == 2 and not fields[1].isdigit()) or int(count) < 1:
        raise ValueError(f"{value!r}: expected gpu[:type][:count] with a count of at least 1")
    return int(count), kind
