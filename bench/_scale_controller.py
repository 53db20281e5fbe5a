"""`aif serve` with a statement counter, for ``bench_scale.py``.

The same composition as ``aif serve`` (``cli/ops.py``): settings from the ``AIF_*``
environment (``load_settings``), the database migrated and seeded (``services.setup.prepare``),
then ``aifactory.server.serve`` (one uvicorn worker in this process, and the controllers unless
``--no-controllers``). Before serving it hooks the engine: every SQL statement the process sends
(SQLAlchemy's ``before_cursor_execute``) and every commit and rollback is counted by the thread
that sent it, so a benchmark can tell the broker's statements from a site agent's or the API's,
and the time from sending each statement to its result (``after_cursor_execute``) by text.

Commands on standard input, one per line:

``snap PATH``
    write a JSON snapshot to ``PATH`` (atomically): counts so far, and each thread's CPU
    seconds (``/proc/self/task/*/stat``) by thread name. The benchmark takes one at the start
    and one at the end of a window and subtracts.

Thread names are grouped with their digits replaced by ``N`` (``aif-site-N``, ``AnyIO worker
thread``, ``ThreadPoolExecutor-N_N`` for a site agent's hand-over pool, ``Thread-N (_beats)``).

Usage (what ``bench_scale.py`` does)::

    AIF_DATA_DIR=... AIF_DATABASE_URL=... python bench/_scale_controller.py [--no-controllers]
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_LIST = re.compile(r"\((?:\s*(?:\?|%\(\w+\)s|\$\d+)\s*,?)+\)")  # an expanded IN (...) list
_COLUMNS = re.compile(r"^SELECT (?:DISTINCT )?(.{50,}?) FROM ")  # a long column list


class Counts:
    """Statements and transactions by thread group, and statement texts by group."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: Counter[str] = Counter()
        self.texts: Counter[str] = Counter()
        self.commits: Counter[str] = Counter()
        self.rollbacks: Counter[str] = Counter()
        self.short: dict[str, str] = {}
        self.seconds: Counter[str] = Counter()  # time from sending a statement to its result

    def statement(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        group = thread_group(threading.current_thread().name)
        text = self.short.get(statement)
        if text is None:  # statements repeat (SQLAlchemy caches them): shorten each once
            text = _LIST.sub("(...)", _SPACE.sub(" ", statement).strip())
            text = self.short[statement] = _COLUMNS.sub("SELECT ... FROM ", text)[:200]
        key = f"{group}\t{text}"
        with self.lock:
            self.statements[group] += 1
            self.texts[key] += 1
        conn.info["bench_started"] = (time.perf_counter(), key)

    def executed(self, conn: Any, *rest: Any) -> None:
        started = conn.info.pop("bench_started", None)
        if started is not None:
            with self.lock:
                self.seconds[started[1]] += time.perf_counter() - started[0]

    def commit(self, conn: Any) -> None:
        with self.lock:
            self.commits[thread_group(threading.current_thread().name)] += 1

    def rollback(self, conn: Any) -> None:
        with self.lock:
            self.rollbacks[thread_group(threading.current_thread().name)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "statements": dict(self.statements),
                "texts": dict(self.texts),
                "seconds": {k: round(v, 6) for k, v in self.seconds.items()},
                "commits": dict(self.commits),
                "rollbacks": dict(self.rollbacks),
            }


@functools.lru_cache(maxsize=4096)
def thread_group(name: str) -> str:
    return _DIGITS.sub("N", name)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, summed by thread group."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for entry in os.scandir("/proc/self/task"):
        try:
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        tid = int(entry.name)
        group = thread_group(names.get(tid, "(native thread)"))
        out[group] = out.get(group, 0.0) + (int(stat[11]) + int(stat[12])) / tick
    return {k: round(v, 3) for k, v in out.items()}


def serve_commands(counts: Counts) -> None:
    """Answer ``snap PATH`` lines on standard input until it closes."""
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        if verb != "snap" or not arg:
            continue
        times = os.times()
        data = {
            "monotonic": time.monotonic(),
            "wall": time.time(),
            "process_cpu_s": times.user + times.system,
            "threads": threading.active_count(),
            "thread_cpu_s": thread_cpu(),
            **counts.snapshot(),
        }
        path = Path(arg)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def main(argv: list[str]) -> None:
    from aifactory.server import serve
    from aifactory.services.setup import prepare
    from aifactory.settings import load_settings

    controllers = "--no-controllers" not in argv
    settings = load_settings()
    db = prepare(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    counts = Counts()
    event.listen(db.engine, "before_cursor_execute", counts.statement)
    event.listen(db.engine, "after_cursor_execute", counts.executed)
    event.listen(db.engine, "commit", counts.commit)
    event.listen(db.engine, "rollback", counts.rollback)
    threading.Thread(
        target=serve_commands, args=(counts,), name="bench-commands", daemon=True
    ).start()
    print(f"aifactory from {Path(sys.modules['aifactory'].__file__ or '').parent}", flush=True)
    serve(
        settings,
        db,
        host=settings.host,
        port=settings.port,
        workers=1,
        controllers=controllers and settings.run_agents,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
