"""Inline SVG charts drawn on the server: the allocation burn-down and stacked usage bars
(usage and capacity over time: ``charts_time``).

Built with ElementTree so every label is escaped; no JavaScript chart library is needed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from markupsafe import Markup

from aifactory.domain.enums import LedgerKind
from aifactory.domain.ledger import LedgerEntry, LedgerState, fold, to_milli
from aifactory.services.access_views import LedgerEntryView, ReportRow

SVG = "http://www.w3.org/2000/svg"
SERIES = ("used", "reserved", "remaining")
BURN = ("remaining", "used", "reserved")
STEP = 24  # legend line height: room for the larger text on phones
ET.register_namespace("", SVG)


@dataclass(frozen=True)
class Point:
    at: datetime
    state: LedgerState


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    names = {k.rstrip("_").replace("_", "-"): str(v) for k, v in attrs.items()}
    node = ET.SubElement(parent, f"{{{SVG}}}{tag}", names)
    if text is not None:
        node.text = text
    return node


def _svg(width: int, height: int, title: str) -> ET.Element:
    root = ET.Element(
        f"{{{SVG}}}svg",
        {"viewBox": f"0 0 {width} {height}", "role": "img", "class": "chart"},
    )
    _el(root, "title", title)
    return root


def _markup(root: ET.Element) -> Markup:
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704 (ElementTree escaped it)


def timeline(entries: list[LedgerEntryView]) -> list[Point]:
    """The allocation's totals after each ledger entry, in order."""
    state, points = LedgerState(), []
    for e in entries:
        state = fold(state, LedgerEntry(LedgerKind(e.kind), to_milli(e.gpu_hours)))
        points.append(Point(e.at, state))
    return points


def _value(state: LedgerState, series: str) -> float:
    return float(getattr(state, series)) / 1000


def _period(start: date, end: date) -> tuple[float, float]:
    """The allocation's period in seconds: from ``start`` 00:00 to the end of ``end`` (UTC)."""
    t0 = datetime.combine(start, time.min, UTC).timestamp()
    return t0, datetime.combine(end + timedelta(days=1), time.min, UTC).timestamp()


def burn_down(
    entries: list[LedgerEntryView], now: datetime, title: str, start: date, end: date
) -> Markup:
    """Remaining, used and reserved GPU-hours over the allocation period (``start`` to
    ``end``) as step lines, the ideal burn (granted down to 0 at the end) and today marked."""
    width, left, top, right, plot_h = 600, 80, 26, 20, 180
    height = top + plot_h + 66 + 3 * STEP  # the legend below the plot: three rows
    root = _svg(width, height, title)
    root.set("class", "chart fit")
    root.set("data-x-start", start.isoformat())
    root.set("data-x-end", end.isoformat())
    t0, t1 = _period(start, end)
    points = timeline(entries)
    final = points[-1].state if points else LedgerState()
    peak = max([float(p.state.granted) / 1000 for p in points] + [1e-9])
    plot_w = width - left - right

    def x(ts: float) -> float:
        return round(left + (min(max(ts, t0), t1) - t0) / (t1 - t0) * plot_w, 1)

    def y(v: float) -> float:
        return round(top + plot_h - v / peak * plot_h, 1)

    _axes(root, left, top, plot_w, plot_h, peak, y)
    for ts, anchor in ((t0, "start"), ((t0 + t1) / 2, "middle"), (t1, "end")):
        day = datetime.fromtimestamp(min(ts, t1 - 1), UTC).date()
        _el(root, "text", day.isoformat(), x=x(ts), y=top + plot_h + 22, text_anchor=anchor)
    _el(root, "text", "date (UTC)", x=left + plot_w / 2, y=top + plot_h + 44, text_anchor="middle")
    granted = _value(final, "granted")
    _el(root, "line", x1=x(t0), y1=y(granted), x2=x(t1), y2=y(0), class_="ideal")
    stop = min(now.timestamp(), t1)
    if t0 <= now.timestamp() <= t1:
        _el(root, "line", x1=x(stop), y1=top, x2=x(stop), y2=top + plot_h, class_="today")
        _el(root, "text", "today", x=x(stop), y=top - 4, text_anchor="middle")
    for series in BURN:
        _el(root, "polyline", points=_steps(points, series, x, y, stop), class_=f"line {series}")
    _burn_legend(root, left, top + plot_h + 66, plot_w / 2, final)
    ideal = granted * max(0.0, min(1.0, (t1 - now.timestamp()) / (t1 - t0)))
    _describe(
        root,
        f"Allocation period {start} to {end}. Granted {granted:,.3f} GPU-h; now "
        + ", ".join(f"{s} {_value(final, s):,.3f}" for s in BURN)
        + f"; ideal remaining today {ideal:,.3f}.",
    )
    return _markup(root)


def _steps(
    points: list[Point],
    series: str,
    x: Callable[[float], float],
    y: Callable[[float], float],
    stop: float,
) -> str:
    """Step-line coordinates of one series from the period's start to ``stop``."""
    coords, value = [f"{x(0)},{y(0)}"], 0.0
    for p in points:
        ts = p.at.timestamp()
        if ts > stop:
            break
        coords.append(f"{x(ts)},{y(value)}")
        value = _value(p.state, series)
        coords.append(f"{x(ts)},{y(value)}")
    coords.append(f"{x(stop)},{y(value)}")
    return " ".join(coords)


def _burn_legend(
    root: ET.Element, at_x: float, at_y: float, col: float, final: LedgerState
) -> None:
    """Below the plot, two a row: the three series with their latest values, the guides."""
    lines = [(f"{s} {_value(final, s):,.3f}".rstrip("0").rstrip("."), s) for s in BURN]
    for i, (line, kind) in enumerate([*lines, ("- - ideal burn", "ideal"), ("| today", "")]):
        x, y = at_x + col * (i % 2), at_y + STEP * (i // 2)
        _el(root, "text", line, x=x, y=y, class_=f"legend {kind}".strip())


def _describe(root: ET.Element, text: str) -> None:
    """A <desc> with the numbers, and the chart's accessible name built from title and desc."""
    _el(root, "desc", text)
    root.set("aria-label", f"{root[0].text}. {text}")


def _axes(
    root: ET.Element, left: int, top: int, w: int, h: int, peak: float, y: Callable[[float], float]
) -> None:
    _el(root, "line", x1=left, y1=top + h, x2=left + w, y2=top + h, class_="axis")
    _el(root, "line", x1=left, y1=top, x2=left, y2=top + h, class_="axis")
    for frac in (0, 0.5, 1):
        value = peak * frac
        label = f"{value:,.0f}" if peak >= 100 else f"{value:,.1f}"
        _el(root, "text", label, x=left - 6, y=y(value) + 4, text_anchor="end")
        _el(root, "line", x1=left, y1=y(value), x2=left + w, y2=y(value), class_="grid")
    _el(root, "text", "GPU-h", x=left, y=top - 10, text_anchor="middle")


def usage_bars(rows: list[ReportRow], title: str) -> Markup:
    """One stacked bar per group: used, reserved and remaining GPU-hours."""
    width, bar_h, gap = 640, 18, 8
    label_w = max(150, 12 + 6 * max((len(r.key) for r in rows), default=0))  # 11 px text
    height = max(len(rows), 1) * (bar_h + gap) + 40
    root = _svg(width, height, title)
    peak = float(max((_total(r) for r in rows), default=Decimal(0))) or 1.0
    plot_w = width - label_w - 90
    for i, row in enumerate(rows):
        top = 8 + i * (bar_h + gap)
        _el(root, "text", row.key, x=label_w - 6, y=top + 13, text_anchor="end")
        offset = float(label_w)
        for series in SERIES:
            value = float(getattr(row, series))
            span = value / peak * plot_w
            if span > 0:
                bar = _el(
                    root,
                    "rect",
                    x=round(offset, 1),
                    y=top,
                    width=round(span, 1),
                    height=bar_h,
                    class_=f"bar {series}",
                )
                _el(bar, "title", f"{row.key}: {series} {value:,.3f} GPU-h")
            offset += span
        _el(root, "text", f"{float(_total(row)):,.1f}", x=round(offset + 4, 1), y=top + 13)
    legend_y = height - 12
    for i, series in enumerate(SERIES):
        _el(
            root,
            "rect",
            x=label_w + i * 110,
            y=legend_y - 10,
            width=12,
            height=12,
            class_=f"bar {series}",
        )
        _el(root, "text", series, x=label_w + i * 110 + 16, y=legend_y)
    return _markup(root)


def _total(row: ReportRow) -> Decimal:
    return row.used + row.reserved + row.remaining
