"""Charts over time drawn on the server: usage stacked by group, utilisation per factory.

Same conventions as ``charts``: ElementTree SVG, a title, a <desc> and an accessible name with
the numbers, a legend in words; colours from the Okabe-Ito palette (told apart by people with
the common colour-vision deficiencies). Pages show the same numbers in a table too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import date

from markupsafe import Markup

from aifactory.portal.charts import _describe, _el, _markup, _svg
from aifactory.services.report_places import SHARE_SOURCES, SOURCE_LABELS
from aifactory.services.timeseries import CapacitySeries, UsageSeries

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8a7a00", "#000")
DASHES = ("none", "6 3", "2 2")
#: Plot geometry; the legend sits below the plot, two entries a row, so phones get the width.
WIDTH, LEFT, TOP, RIGHT, PLOT_H, STEP = 600, 80, 26, 20, 180, 24
PLOT_W = WIDTH - LEFT - RIGHT
LEGEND_Y = TOP + PLOT_H + 66


#: The funding series' keys (the shares of a split) named as the usage reports name the sources.
FUNDING_LABELS = {share: SOURCE_LABELS[source] for share, source in SHARE_SOURCES.items()}


def series_labels(series: UsageSeries) -> dict[str, str]:
    """How the legend and tables name a series' keys (funding sources in words)."""
    return FUNDING_LABELS if series.group_by == "funding" else {}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def height_for(entries: int) -> int:
    return LEGEND_Y + STEP * ((max(entries, 1) + 1) // 2)


def _scale(peak: float) -> Callable[[float], float]:
    def y(v: float) -> float:
        return round(TOP + PLOT_H - v / peak * PLOT_H, 1)

    return y


def _frame(
    root: ET.Element, days: Sequence[date], peak: float, unit: str
) -> Callable[[float], float]:
    """Axes, three value ticks with a grid, first / middle / last date and the unit."""
    y, bottom = _scale(peak), TOP + PLOT_H
    _el(root, "line", x1=LEFT, y1=bottom, x2=LEFT + PLOT_W, y2=bottom, class_="axis")
    _el(root, "line", x1=LEFT, y1=TOP, x2=LEFT, y2=bottom, class_="axis")
    for frac in (0, 0.5, 1):
        value = peak * frac
        label = f"{value:,.{2 if peak < 0.05 else 0}%}" if unit == "%" else f"{value:,.1f}"
        _el(root, "text", label, x=LEFT - 6, y=y(value) + 4, text_anchor="end")
        _el(root, "line", x1=LEFT, y1=y(value), x2=LEFT + PLOT_W, y2=y(value), class_="grid")
    _el(root, "text", "GPU-h" if unit != "%" else "use", x=LEFT, y=TOP - 10, text_anchor="middle")
    if days:
        ticks: list[tuple[date, str, float]] = [(days[0], "start", LEFT)]
        ticks.append((days[-1], "end", LEFT + PLOT_W))
        if len(days) > 2:
            ticks.append((days[len(days) // 2], "middle", LEFT + PLOT_W / 2))
        for day, anchor, at in ticks:
            _el(root, "text", day.isoformat(), x=at, y=bottom + 22, text_anchor=anchor)
    _el(root, "text", unit if unit != "%" else "day (UTC)", x=LEFT + PLOT_W / 2, y=bottom + 44,
        text_anchor="middle")  # fmt: skip
    return y


def _legend(root: ET.Element, lines: list[str], as_lines: bool = False) -> None:
    """One entry per series in words, with its colour (and dash pattern for lines)."""
    for i, line in enumerate(lines):
        at_x, at_y = LEFT + (i % 2) * PLOT_W / 2, LEGEND_Y + STEP * (i // 2)
        if as_lines:
            mark = _el(root, "line", x1=at_x, y1=at_y - 5, x2=at_x + 22, y2=at_y - 5,
                       stroke=colour(i), stroke_width=2.5)  # fmt: skip
            mark.set("stroke-dasharray", DASHES[i % len(DASHES)])
        else:
            _el(root, "rect", x=at_x, y=at_y - 11, width=12, height=12, fill=colour(i))
        _el(root, "text", line, x=at_x + (28 if as_lines else 17), y=at_y)


def _gpu_hours(value: float) -> str:
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def usage_over_time(series: UsageSeries, title: str, labels: dict[str, str]) -> Markup:
    """GPU-hours charged per day or week, one stacked bar per bucket, one colour per group."""
    keys = list(series.values)
    root = _svg(WIDTH, height_for(len(keys)), title)
    root.set("class", "chart fit")
    sums = [sum(float(series.values[k][i]) for k in keys) for i in range(len(series.buckets))]
    y = _frame(root, series.buckets, max([*sums, 1e-9]), f"{series.bucket} (UTC)")
    slot = PLOT_W / max(len(series.buckets), 1)
    for i, bucket in enumerate(series.buckets):
        base = 0.0
        for j, key in enumerate(keys):
            value = float(series.values[key][i])
            if value <= 0:
                continue
            bar = _el(root, "rect", x=round(LEFT + i * slot + slot * 0.1, 1), y=y(base + value),
                      width=round(slot * 0.8, 1), height=round(y(base) - y(base + value), 1),
                      fill=colour(j))  # fmt: skip
            _el(bar, "title", f"{bucket}: {labels.get(key, key)} {value:,.3f} GPU-h")
            base += value
    totals = [f"{labels.get(k, k)} {_gpu_hours(float(series.totals[k]))}" for k in keys]
    _legend(root, totals or ["no charges in this range"])
    _describe(
        root,
        f"GPU-hours charged per {series.bucket} from {series.start} to {series.end}, by "
        f"{series.group_by}. Totals: " + ("; ".join(totals) or "none") + ".",
    )
    return _markup(root)


def utilisation_chart(rows: list[CapacitySeries], title: str) -> Markup:
    """Per factory: the share of its in-service GPU-hours that was charged, one line each."""
    root = _svg(WIDTH, height_for(len(rows)), title)
    root.set("class", "chart fit")
    days = rows[0].days if rows else []
    peak = max([u for r in rows for u in r.utilisation] + [0.01])
    y = _frame(root, days, peak, "%")
    step = PLOT_W / max(len(days) - 1, 1)
    for i, row in enumerate(rows):
        coords = " ".join(
            f"{round(LEFT + d * step, 1)},{y(u)}" for d, u in enumerate(row.utilisation)
        )
        line = _el(root, "polyline", points=coords, fill="none", stroke=colour(i))
        line.set("stroke-width", "2")
        line.set("stroke-dasharray", DASHES[i % len(DASHES)])
    summary = [
        f"{r.factory} {max(r.gpus, default=0):,} GPUs, {_gpu_hours(float(sum(r.used)))} GPU-h"
        for r in rows
    ]
    _legend(root, [r.factory for r in rows], as_lines=True)
    _describe(root, "Per factory, GPUs in service and GPU-hours charged: " + "; ".join(summary))
    return _markup(root)
