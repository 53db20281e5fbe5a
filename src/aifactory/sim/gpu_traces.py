"""Readers for the GPU / AI-cluster traces: Philly job extract, Pollux/Sia workloads, Alibaba
PAI pod and node lists.

None of these traces carries user run-time estimates, so a job's requested time is its run time
(exact estimates). Widths are GPUs. Rows that cannot be a GPU job (CPU-only pods, pods never
scheduled, zero durations) are dropped and counted by reason in ``Trace.dropped``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from aifactory.sim.model import Job, SiteSpec, Trace
from aifactory.sim.tracefile import read_text, trace_error

__all__ = [
    "NOMINAL_GPU_HOURS",
    "read_alibaba_nodes",
    "read_alibaba_pods",
    "read_philly",
    "read_pollux",
]

#: GPU-hours one job of each Pollux/Sia application needs, the midpoint of the size class the
#: Pollux paper (OSDI'21, Table 1) gives it: S 0-1, M 1-10, L 10-100, XL 100-1000 GPU-hours.
#: The workload files give no durations, so run time = GPU-hours / replicas.
NOMINAL_GPU_HOURS: dict[str, float] = {
    "cifar10": 0.5,
    "ncf": 0.5,
    "bert": 5.0,
    "deepspeech2": 5.0,
    "yolov3": 50.0,
    "imagenet": 500.0,
}

Row = dict[str, str]
RowParser = Callable[[Row], "tuple[int, int, int, int] | str"]


def _rows(path: Path | str, required: tuple[str, ...]) -> Iterator[tuple[int, Row]]:
    reader = csv.DictReader(io.StringIO(read_text(path)))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise trace_error(path, f"missing CSV column(s): {', '.join(missing)}", 1)
    for row in reader:
        yield reader.line_num, row


def _collect(
    path: Path | str, required: tuple[str, ...], parse: RowParser, lenient: bool, unit: str
) -> Trace:
    """Parse every row; a row parser returns (submit, run, width, user) or a drop reason."""
    jobs: list[Job] = []
    dropped: Counter[str] = Counter()
    skipped = 0
    for line, row in _rows(path, required):
        try:
            parsed = parse(row)
        except (ValueError, KeyError, TypeError) as exc:
            if not lenient:
                raise trace_error(path, f"malformed row: {exc}", line) from None
            skipped += 1
            continue
        if isinstance(parsed, str):
            dropped[parsed] += 1
            continue
        submit, run, width, user = parsed
        jobs.append(Job(len(jobs) + 1, submit, run, run, width, user, line))
    if not jobs:
        raise trace_error(path, "trace has no jobs")
    base = min(j.submit for j in jobs)
    for job in jobs:
        job.submit -= base
    jobs.sort(key=lambda j: j.submit)
    name = str(path).rsplit("/", 1)[-1]
    return Trace(name, jobs, None, unit, skipped, dict(dropped))


def read_philly(path: Path | str, *, lenient: bool = False) -> Trace:
    """Philly job extract: ``timestamp, duration, num_gpus, gpu_time, cluster``.

    Submit times are seconds from the first submission; ``user`` is the virtual cluster's
    index (in order of first appearance), which federation runs use as the home grouping.
    """
    clusters: dict[str, int] = {}

    def parse(row: Row) -> tuple[int, int, int, int] | str:
        stamp = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        run = round(float(row["duration"]))
        gpus = int(row["num_gpus"])
        if gpus <= 0:
            return "no_gpus"
        if run <= 0:
            return "no_runtime"
        user = clusters.setdefault(row["cluster"], len(clusters))
        return int(stamp.timestamp()), run, gpus, user

    return _collect(path, ("timestamp", "duration", "num_gpus", "cluster"), parse, lenient, "gpus")


def read_pollux(
    path: Path | str, *, lenient: bool = False, gpu_hours: dict[str, float] | None = None
) -> Trace:
    """Pollux/Sia workload: ``name, time, application, num_replicas, batch_size``.

    Args:
        path: The workload CSV.
        lenient: Skip malformed rows (counted) instead of failing.
        gpu_hours: GPU-hours per application; defaults to :data:`NOMINAL_GPU_HOURS`.
    """
    table = gpu_hours or NOMINAL_GPU_HOURS

    def parse(row: Row) -> tuple[int, int, int, int] | str:
        app = row["application"]
        if app not in table:
            raise ValueError(f"unknown application {app!r} (known: {', '.join(sorted(table))})")
        replicas = int(row["num_replicas"])
        if replicas <= 0:
            return "no_gpus"
        run = max(1, round(table[app] * 3600 / replicas))
        return round(float(row["time"])), run, replicas, -1

    required = ("time", "application", "num_replicas")
    return _collect(path, required, parse, lenient, "gpus")


def read_alibaba_pods(path: Path | str, *, lenient: bool = False) -> Trace:
    """Alibaba PAI pod list (``openb_pod_list_*.csv``).

    A pod is a job of ``num_gpu`` whole GPUs (a fractional ``gpu_milli`` share still takes one
    GPU: GPU sharing is not modelled), submitted at ``creation_time`` and running from
    ``scheduled_time`` to ``deletion_time``. CPU-only pods and pods never scheduled are dropped.
    """

    def parse(row: Row) -> tuple[int, int, int, int] | str:
        gpus = int(row["num_gpu"])
        if gpus <= 0:
            return "cpu_only"
        if not row["scheduled_time"]:
            return "never_scheduled"
        run = int(row["deletion_time"]) - int(row["scheduled_time"])
        if run <= 0:
            return "no_runtime"
        return int(row["creation_time"]), run, gpus, -1

    required = ("num_gpu", "creation_time", "deletion_time", "scheduled_time")
    return _collect(path, required, parse, lenient, "gpus")


def read_alibaba_nodes(path: Path | str) -> list[SiteSpec]:
    """Alibaba node list (``openb_node_list_*.csv``) as sites: one per (GPU model, GPUs per
    node) group of GPU nodes, named like ``V100M16-x8``. CPU-only nodes are left out."""
    groups: Counter[tuple[str, int]] = Counter()
    for line, row in _rows(path, ("gpu", "model")):
        try:
            gpus = int(row["gpu"])
        except ValueError:
            raise trace_error(path, f"malformed gpu count {row['gpu']!r}", line) from None
        if gpus > 0:
            groups[(row["model"] or "unknown", gpus)] += 1
    if not groups:
        raise trace_error(path, "node list has no GPU nodes")
    return [
        SiteSpec(f"{model}-x{gpus}", nodes, gpus, gpu_model=model)
        for (model, gpus), nodes in sorted(groups.items())
    ]
