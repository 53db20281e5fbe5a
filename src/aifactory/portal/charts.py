"""Inline SVG charts drawn on the server: the allocation burn-down and stacked usage bars.

Built with ElementTree so every label is escaped; no JavaScript chart library is needed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from markupsafe import Markup

from aifactory.domain.enums import LedgerKind
from aifactory.domain.ledger import LedgerEntry, LedgerState, fold, to_milli
from aifactory.services.access_views import LedgerEntryView, ReportRow

SVG = "http://www.w3.org/2000/svg"
SERIES = ("used", "reserved", "remaining")
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


def burn_down(entries: list[LedgerEntryView], now: datetime, title: str) -> Markup:
    """Used, reserved and remaining GPU-hours over time, as step lines."""
    width, height, left, bottom, top, right = 640, 260, 64, 36, 26, 140
    root = _svg(width, height, title)
    points = timeline(entries)
    if not points:
        _el(root, "text", "no ledger entries yet", x=left, y=height / 2)
        return _markup(root)
    t0, t1 = points[0].at.timestamp(), max(now.timestamp(), points[-1].at.timestamp() + 1)
    peak = max(max(p.state.granted for p in points) / 1000, 1e-9)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(ts: float) -> float:
        return round(left + (ts - t0) / (t1 - t0) * plot_w, 1)

    def y(v: float) -> float:
        return round(top + plot_h - v / peak * plot_h, 1)

    _axes(root, left, top, plot_w, plot_h, peak, y)
    _el(root, "text", points[0].at.strftime("%Y-%m-%d %H:%M"), x=left, y=height - 10)
    _el(
        root,
        "text",
        now.strftime("%Y-%m-%d %H:%M"),
        x=left + plot_w,
        y=height - 10,
        text_anchor="end",
    )
    for i, series in enumerate(SERIES):
        coords: list[str] = []
        for j, p in enumerate(points):
            if j:
                coords.append(f"{x(p.at.timestamp())},{y(_value(points[j - 1].state, series))}")
            coords.append(f"{x(p.at.timestamp())},{y(_value(p.state, series))}")
        coords.append(f"{x(t1)},{y(_value(points[-1].state, series))}")
        _el(root, "polyline", points=" ".join(coords), class_=f"line {series}")
        last = _value(points[-1].state, series)
        _el(
            root,
            "text",
            f"{series} {last:,.3f}".rstrip("0").rstrip("."),
            x=left + plot_w + 8,
            y=top + 14 + 18 * i,
            class_=f"legend {series}",
        )
    return _markup(root)


def _axes(
    root: ET.Element, left: int, top: int, w: int, h: int, peak: float, y: Callable[[float], float]
) -> None:
    _el(root, "line", x1=left, y1=top + h, x2=left + w, y2=top + h, class_="axis")
    _el(root, "line", x1=left, y1=top, x2=left, y2=top + h, class_="axis")
    for frac in (0, 0.5, 1):
        value = peak * frac
        _el(root, "text", f"{value:,.1f}", x=left - 6, y=y(value) + 4, text_anchor="end")
        _el(root, "line", x1=left, y1=y(value), x2=left + w, y2=y(value), class_="grid")
    _el(root, "text", "GPU-h", x=left, y=top - 10, text_anchor="middle")


def usage_bars(rows: list[ReportRow], title: str) -> Markup:
    """One stacked bar per group: used, reserved and remaining GPU-hours."""
    width, label_w, bar_h, gap = 640, 150, 18, 8
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
