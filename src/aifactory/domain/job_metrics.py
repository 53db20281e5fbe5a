"""Training metrics a job reports in its output: ``step=120 loss=2.314 lr=0.003``.

A line counts when it holds ``step=<number>``; every other ``key=<number>`` pair on it becomes a
point of that key's series at that step. Other text on the line is ignored (``eval step=100
val_loss=2.1``, ``checkpoint step=20 path=ckpt.pt``). A line that is a JSON object with a
numeric ``step`` counts the same way (``{"step": 3, "loss": 1.2}``). Values that are not finite
(``nan``, ``inf``) are left out, and a later value at the same step replaces an earlier one.
No I/O here: ``services/job_metrics.py`` feeds the lines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
PAIR = re.compile(
    rf"(?<![\w./=-])([A-Za-z_][\w./-]{{0,63}})=({_NUMBER})(?=$|[\s,;])", re.IGNORECASE
)
STEP = "step"
#: Points kept per series; past it, every other point is dropped (the curve keeps its shape).
MAX_POINTS = 2000


@dataclass
class Series:
    """Points of every key by step, in the order the steps came."""

    points: dict[str, dict[int, float]] = field(default_factory=dict)
    lines: int = 0  # lines that carried a step

    def add(self, step: int, values: dict[str, float]) -> None:
        self.lines += 1
        for key, value in values.items():
            series = self.points.setdefault(key, {})
            series[step] = value
            if len(series) > MAX_POINTS:
                self.points[key] = dict(list(series.items())[::2])

    def feed(self, lines: Iterable[str]) -> None:
        for line in lines:
            parsed = parse_line(line)
            if parsed is not None:
                self.add(*parsed)

    def ordered_keys(self) -> list[str]:
        """``loss`` first, then the others by name."""
        return sorted(self.points, key=lambda k: (k != "loss", k))

    def last(self, key: str) -> tuple[int, float] | None:
        series = self.points.get(key)
        if not series:
            return None
        step = max(series)
        return step, series[step]


def parse_line(line: str) -> tuple[int, dict[str, float]] | None:
    """The step and the finite ``key=number`` values of one line, or None without a step."""
    text = line.strip()
    if text.startswith("{"):
        return _json_line(text)
    pairs = {key: value for key, value in PAIR.findall(text)}
    return _point(pairs)


def _json_line(text: str) -> tuple[int, dict[str, float]] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    numbers = {
        str(k): str(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return _point(numbers)


def _point(pairs: dict[str, str]) -> tuple[int, dict[str, float]] | None:
    raw = pairs.pop(STEP, None)
    if raw is None:
        return None
    step = float(raw)
    if not math.isfinite(step) or step < 0 or step != int(step):
        return None
    values = {k: v for k, v in ((k, float(v)) for k, v in pairs.items()) if math.isfinite(v)}
    return int(step), values
