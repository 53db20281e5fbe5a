"""A planning report as rows of (what, before, after): the CLI's table and the portal's."""

from __future__ import annotations

from typing import Any

__all__ = ["FUNDING_LABELS", "duration", "report_rows"]

FUNDING_LABELS = {
    "eu_digital_europe": "EU (Digital Europe)",
    "national": "national",
    "commercial": "commercial",
}
Row = tuple[str, str, str]


def duration(seconds: float) -> str:
    """A wait in the unit that reads best: ``0 s``, ``45 s``, ``12 min``, ``3.4 h``, ``2.1 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _waits(label: str, key: str, run: dict[str, Any]) -> str:
    block = run["playground"] if key == "playground" else run
    return duration(block["wait_s"][label])


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _factory_rows(before: dict[str, Any], after: dict[str, Any]) -> list[Row]:
    rows = []
    names = list(dict.fromkeys([*before["factories"], *after["factories"]]))
    for name in names:
        b, a = before["factories"].get(name), after["factories"].get(name)
        rows.append(
            (
                f"utilisation {name}",
                f"{_pct(b['utilisation'])} of {b['gpus']:,}" if b else "-",
                f"{_pct(a['utilisation'])} of {a['gpus']:,}" if a else "-",
            )
        )
    return rows


def report_rows(report: dict[str, Any]) -> list[Row]:
    """Every figure of the report, before and after, as display text."""
    b, a = report["before"], report["after"]
    rows: list[Row] = [
        ("GPUs", f"{b['capacity_gpus']:,}", f"{a['capacity_gpus']:,}"),
        ("placement / local policy", f"{b['placement']} / {b['policy']}",
         f"{a['placement']} / {a['policy']}"),
        ("jobs run (rejected)", f"{b['jobs']:,} ({b['rejected']:,})",
         f"{a['jobs']:,} ({a['rejected']:,})"),
    ]  # fmt: skip
    for p in ("p50", "p90", "p99"):
        rows.append((f"wait {p}", _waits(p, "all", b), _waits(p, "all", a)))
    rows.append(("mean wait", duration(b["wait_s"]["mean"]), duration(a["wait_s"]["mean"])))
    rows.append(
        ("mean bounded slowdown",
         f"{b['mean_bounded_slowdown']:.2f}", f"{a['mean_bounded_slowdown']:.2f}")
    )  # fmt: skip
    n = report["workload"]["playground"]
    small = f"Playground-sized (<= {n['max_gpus']} GPUs, <= {n['max_run_s'] // 3600} h"
    rows.append((f"{small}) jobs", f"{b['playground']['jobs']:,}", f"{a['playground']['jobs']:,}"))
    for p in ("p50", "p90", "p99"):
        rows.append((f"Playground-sized wait {p}", _waits(p, "playground", b),
                     _waits(p, "playground", a)))  # fmt: skip
    rows.append(("utilisation (federation)", _pct(b["utilisation"]), _pct(a["utilisation"])))
    rows += _factory_rows(b, a)
    for key, label in FUNDING_LABELS.items():
        rows.append(
            (f"GPU-hours {label}", f"{b['gpu_hours_by_funding'][key]:,.0f}",
             f"{a['gpu_hours_by_funding'][key]:,.0f}")
        )  # fmt: skip
    return rows
