"""Inline SVG for the capacity plan: paired horizontal bars, before and after, per row."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from markupsafe import Markup

from aifactory.portal.charts import _describe, _el, _markup, _svg

__all__ = ["paired_bars"]

PAIR = ("before", "after")


def paired_bars(
    rows: list[tuple[str, float, float]], title: str, fmt: Callable[[float], str]
) -> Markup:
    """One pair of bars per row (before above after), each labelled with ``fmt(value)``."""
    width, bar_h, gap = 640, 12, 10
    label_w = max(140, 12 + 6 * max((len(r[0]) for r in rows), default=0))
    height = max(len(rows), 1) * (2 * bar_h + gap) + 40
    root: ET.Element = _svg(width, height, title)
    peak = max((max(b, a) for _, b, a in rows), default=0.0) or 1.0
    plot_w = width - label_w - 90
    for i, (label, *values) in enumerate(rows):
        top = 8 + i * (2 * bar_h + gap)
        _el(root, "text", label, x=label_w - 6, y=top + bar_h + 4, text_anchor="end")
        for k, (series, value) in enumerate(zip(PAIR, values, strict=True)):
            y = top + k * bar_h
            span = round(value / peak * plot_w, 1)
            bar = _el(root, "rect", x=label_w, y=y, width=max(span, 0.5), height=bar_h - 1,
                      class_=f"bar {'used' if series == 'before' else 'remaining'}")  # fmt: skip
            _el(bar, "title", f"{label}, {series}: {fmt(value)}")
            _el(root, "text", fmt(value), x=label_w + span + 4, y=y + bar_h - 2)
    legend_y = height - 12
    for k, series in enumerate(PAIR):
        css = f"bar {'used' if series == 'before' else 'remaining'}"
        _el(root, "rect", x=label_w + k * 110, y=legend_y - 10, width=12, height=12, class_=css)
        _el(root, "text", series, x=label_w + k * 110 + 16, y=legend_y)
    _describe(root, "; ".join(f"{r[0]}: {fmt(r[1])} before, {fmt(r[2])} after" for r in rows))
    return _markup(root)
