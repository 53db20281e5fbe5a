"""A job's training metrics, read from its stdout (``domain/job_metrics.py`` parses the lines).

Reading is incremental and capped, so a page refreshing every few seconds costs little even for
a large log: each process keeps, per log file, how far it has parsed and the series so far
(``_CACHE``, the ``CACHED_LOGS`` most recently read), and each call reads only the bytes added
since, at most ``MAX_READ`` of them. A log first seen when it is already larger than
``FIRST_READ`` is parsed from its last ``FIRST_READ`` bytes only (``truncated`` says so), so a
100 MB log is never read whole. A partial last line waits for its newline (or the job's end).

Only the log is read: the platform sets no metrics-file variable, because a file the job
writes lives on the site's file system, where only the log files are already collected.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from aifactory.domain.job_metrics import Series
from aifactory.domain.jobs import TERMINAL
from aifactory.services import job_queries
from aifactory.services.job_metrics_views import JobMetrics, MetricSeries
from aifactory.services.permissions import Principal

FIRST_READ = 4 * 1024 * 1024
MAX_READ = 8 * 1024 * 1024
CACHED_LOGS = 64


@dataclass
class _Parsed:
    offset: int = 0
    truncated: bool = False
    aligned: bool = True  # the offset is at the start of a line
    series: Series = field(default_factory=Series)


_CACHE: OrderedDict[str, _Parsed] = OrderedDict()
_LOCK = threading.Lock()


def read_log(path: Path, final: bool = False) -> tuple[bool, list[MetricSeries]]:
    """Whether the log was cut, and its series so far, after reading what was added since the
    last call (``final``: the job ended, so a last line without a newline counts too)."""
    key = str(path)
    with _LOCK:
        parsed = _CACHE.pop(key, None)
        size = _size(path)
        if parsed is None or size < parsed.offset:  # new, or rewritten from the start
            start = max(0, size - FIRST_READ)
            parsed = _Parsed(offset=start, truncated=start > 0, aligned=start == 0)
        if size > parsed.offset:
            with suppress(OSError):  # gone or unreadable since: what was read so far stands
                _advance(path, parsed, final)
        _CACHE[key] = parsed
        while len(_CACHE) > CACHED_LOGS:
            _CACHE.popitem(last=False)
        points = parsed.series.points
        series = [
            MetricSeries(key=k, steps=list(points[k]), values=list(points[k].values()))
            for k in parsed.series.ordered_keys()
        ]
        return parsed.truncated, series


def _size(path: Path) -> int:
    """The log's size; 0 while it does not exist (or cannot be seen)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _advance(path: Path, parsed: _Parsed, final: bool) -> None:
    with path.open("rb") as fh:
        fh.seek(parsed.offset)
        data = fh.read(MAX_READ)
    end = len(data) if final else data.rfind(b"\n") + 1
    if end == 0 and len(data) == MAX_READ:  # one huge line: no metrics in it, skip it
        parsed.offset, parsed.aligned = parsed.offset + len(data), False
        return
    lines = data[:end].decode("utf-8", errors="replace").splitlines()
    if not parsed.aligned and lines:  # a tail starts mid-line: that piece is not a line
        lines, parsed.aligned = lines[1:], True
    parsed.series.feed(lines)
    parsed.offset += end


def job_metrics(session: Session, who: Principal, job_id: int) -> JobMetrics:
    """The current attempt's series; visible to whoever may read the job's logs."""
    job = job_queries.visible_job(session, who, job_id)
    row = next((a for a in job.attempts if a.attempt == job.attempt), None)
    finished = job.state in TERMINAL
    if row is None or not row.stdout_path:
        return JobMetrics(
            job_id=job.id, attempt=job.attempt, finished=finished, truncated=False, series=[]
        )
    truncated, series = read_log(Path(row.stdout_path), final=finished)
    return JobMetrics(
        job_id=job.id, attempt=job.attempt, finished=finished, truncated=truncated, series=series
    )
