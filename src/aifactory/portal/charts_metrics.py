"""A job's loss curve as inline SVG, drawn on the server from its ``step=N loss=X`` lines.

The curve shows every series whose name ends in ``loss`` (``loss``, ``val_loss``), or else the
first series reported; at most ``MAX_DRAWN`` points each (evenly thinned), so a long run stays a
small page. Built with ElementTree, like ``charts.py``, so every label is escaped.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from markupsafe import Markup

from aifactory.portal.charts import SVG, _el
from aifactory.services.job_metrics_views import JobMetrics, MetricSeries

WIDTH, HEIGHT = 520, 280
LEFT, RIGHT, TOP, BOTTOM = 58, 26, 30, 46
MAX_DRAWN = 400
COLOURS = ("#1f5fa8", "#b3541e", "#2e7d32", "#6a3d9a")  # contrast >= 4.5:1 on white


def _svg(title: str) -> ET.Element:
    box = f"0 0 {WIDTH} {HEIGHT}"
    root = ET.Element(f"{{{SVG}}}svg", {"viewBox": box, "role": "img", "class": "chart loss"})
    _el(root, "title", title)
    return root


def plotted(metrics: JobMetrics) -> list[MetricSeries]:
    """The series the chart draws: the losses, or the first series with points."""
    losses = [s for s in metrics.series if s.key.lower().endswith("loss") and s.steps]
    if losses:
        return losses[: len(COLOURS)]
    return [s for s in metrics.series if s.steps][:1]


def latest(metrics: JobMetrics) -> str:
    """``step 120: loss 2.314, val_loss 2.4`` for the newest step of each plotted series."""
    shown = plotted(metrics)
    if not shown:
        return ""
    step = max(s.steps[-1] for s in shown)
    parts = [f"{s.key} {_fmt(s.values[-1])}" for s in shown if s.steps[-1] == step]
    return f"step {step}: " + ", ".join(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high``."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _thin(series: MetricSeries) -> list[tuple[int, float]]:
    points = list(zip(series.steps, series.values, strict=True))
    stride = max(1, math.ceil(len(points) / MAX_DRAWN))
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


class _Frame:
    """Data to pixel coordinates for one chart."""

    def __init__(self, series: list[MetricSeries]) -> None:
        steps = [s for x in series for s in x.steps]
        values = [v for x in series for v in x.values]
        first, last = min(steps), max(steps)
        self.x0 = 0 if first <= (last - first) / 10 else first  # from 0 when nearly there
        self.x1 = max(last, self.x0 + 1)
        low, high = min(values), max(values)
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        self.y0, self.y1 = low - pad, high + pad

    def x(self, step: float) -> float:
        return LEFT + (step - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def loss_chart(metrics: JobMetrics, title: str) -> Markup | None:
    """The SVG, or None while the job has reported nothing to draw."""
    series = plotted(metrics)
    if not series:
        return None
    frame = _Frame(series)
    root = _svg(title)
    _axes(root, frame, series[0].key if len(series) == 1 else "loss")
    for i, s in enumerate(series):
        points = " ".join(f"{frame.x(st):.1f},{frame.y(v):.1f}" for st, v in _thin(s))
        colour = COLOURS[i]
        _el(root, "polyline", points=points, class_=f"line series-{i}", stroke=colour)
        if len(s.steps) == 1:  # one point draws no line: mark it
            _el(root, "circle", cx=f"{frame.x(s.steps[0]):.1f}", cy=f"{frame.y(s.values[0]):.1f}",
                r=3, fill=colour)  # fmt: skip
        _el(root, "rect", x=LEFT + 8 + i * 110, y=8, width=12, height=12, fill=colour)
        _el(root, "text", s.key, x=LEFT + 24 + i * 110, y=18)
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704 (ElementTree escaped it)


def _axes(root: ET.Element, frame: _Frame, label: str) -> None:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    for value in _ticks(frame.y0, frame.y1):
        y = f"{frame.y(value):.1f}"
        _el(root, "line", x1=LEFT, x2=right, y1=y, y2=y, class_="grid")
        _el(root, "text", _fmt(value), x=LEFT - 6, y=y, text_anchor="end", dy="0.35em")
    for step in _ticks(frame.x0, frame.x1):
        x = f"{frame.x(step):.1f}"
        _el(root, "line", x1=x, x2=x, y1=bottom, y2=bottom + 4, class_="axis")
        _el(root, "text", f"{step:g}", x=x, y=bottom + 16, text_anchor="middle")
    _el(root, "line", x1=LEFT, x2=right, y1=bottom, y2=bottom, class_="axis")
    _el(root, "line", x1=LEFT, x2=LEFT, y1=TOP, y2=bottom, class_="axis")
    _el(root, "text", "step", x=(LEFT + right) / 2, y=HEIGHT - 8, text_anchor="middle")
    middle = (TOP + bottom) / 2
    _el(root, "text", label, x=14, y=middle, text_anchor="middle",
        transform=f"rotate(-90 14 {middle})")  # fmt: skip
