"""SWF reader and cleaning filter edge cases."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from aifactory.errors import Invalid
from aifactory.sim.cleaning import clean_swf
from aifactory.sim.swf import SWF_FIELDS, read_swf


def line(job: int, submit: int, run: int, alloc: int, req_procs: int, req_time: int) -> str:
    fields = [
        job,
        submit,
        0,
        run,
        alloc,
        -1,
        -1,
        req_procs,
        req_time,
        -1,
        1,
        7,
        1,
        -1,
        1,
        -1,
        -1,
        -1,
    ]
    return " ".join(str(f) for f in fields)


def write(tmp_path: Path, body: str, name: str = "t.swf", header: str = "; MaxProcs: 64\n") -> Path:
    path = tmp_path / name
    data = (header + body).encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def test_reads_all_18_fields_and_the_source_line(tmp_path: Path) -> None:
    log = read_swf(write(tmp_path, line(5, 10, 100, 4, 8, 200) + "\n"))
    rec = log.records[0]
    assert len(SWF_FIELDS) == 18
    assert (rec.job, rec.submit, rec.run, rec.alloc_procs, rec.req_procs, rec.req_time) == (
        5, 10, 100, 4, 8, 200,
    )  # fmt: skip
    assert (rec.user, rec.queue, rec.line) == (7, 1, 2)


def test_header_size_takes_the_first_integer_of_a_text_value(tmp_path: Path) -> None:
    header = "; MaxNodes: 400 (48 interactive, 352 batch)\n; Note: text: with colons\n"
    log = read_swf(write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n", header=header))
    assert log.max_procs == 400


def test_max_procs_wins_over_max_nodes(tmp_path: Path) -> None:
    log = read_swf(
        write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n", header="; MaxNodes: 128\n; MaxProcs: 1024\n")
    )
    assert log.max_procs == 1024


def test_unsorted_submit_times_are_sorted_stably(tmp_path: Path) -> None:
    body = "\n".join([line(1, 50, 5, 1, 1, 9), line(2, 10, 5, 1, 1, 9), line(3, 10, 5, 1, 1, 9)])
    log = read_swf(write(tmp_path, body + "\n"))
    assert [r.job for r in log.records] == [2, 3, 1]


def test_fractional_fields_are_rounded(tmp_path: Path) -> None:
    log = read_swf(
        write(tmp_path, line(1, 0, 5, 1, 1, 9).replace(" -1 -1 1 9", " 12.6 -1 1 9", 1) + "\n")
    )
    assert log.records[0].avg_cpu == 13


def test_gzip_traces_are_read(tmp_path: Path) -> None:
    assert len(read_swf(write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n", "t.swf.gz")).records) == 1


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, (line(1, 0, 5, 1, 1, 9) + "\n") * 200, "t.swf.gz")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(Invalid, match=r"t\.swf\.gz: gzip stream is truncated"):
        read_swf(path)


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n1 2 three\n")
    with pytest.raises(Invalid, match=r"t\.swf:3: malformed SWF line"):
        read_swf(path)


def test_lenient_skips_malformed_lines_and_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n1 2 three\nx " * 1 + "\n")
    log = read_swf(path, lenient=True)
    assert (len(log.records), log.skipped_lines) == (1, 2)


def test_trace_without_jobs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="trace has no jobs"):
        read_swf(write(tmp_path, ""))


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match=r"nope\.swf: cannot read trace"):
        read_swf(tmp_path / "nope.swf")


def cleaned(tmp_path: Path, *lines: str) -> tuple[list[tuple[int, int, int, int]], dict[str, int]]:
    trace = clean_swf(
        read_swf(write(tmp_path, "\n".join([*lines, line(99, 0, 5, 1, 1, 9)]) + "\n"))
    )
    kept = [(j.id, j.width, j.run, j.req) for j in trace.jobs if j.id != 99]
    return kept, {k: v for k, v in trace.dropped.items() if v}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (line(1, 0, 5, 65, 1, 9), "too_wide"),  # allocated > MaxProcs
        (line(1, 0, 5, 1, 65, 9), "too_wide"),  # requested > MaxProcs
        (line(1, 0, 5, -1, -1, 9), "no_procs"),
        (line(1, 0, 0, 1, 1, 9), "no_runtime"),
        (line(1, 0, -1, 1, 1, 9), "no_runtime"),
        (line(1, 0, 5, 1, 1, -1), "no_estimate"),
        (line(1, -5, 5, 1, 1, 9), "negative_submit"),
    ],
)
def test_filter_drops_and_counts_by_reason(tmp_path: Path, record: str, reason: str) -> None:
    assert cleaned(tmp_path, record) == ([], {reason: 1})


def test_width_is_requested_procs_else_allocated(tmp_path: Path) -> None:
    kept, _ = cleaned(tmp_path, line(1, 0, 5, 4, 8, 9), line(2, 0, 5, 4, -1, 9))
    assert [(jid, width) for jid, width, _, _ in kept] == [(1, 8), (2, 4)]


def test_runtime_is_capped_at_the_requested_time(tmp_path: Path) -> None:
    kept, _ = cleaned(tmp_path, line(1, 0, 500, 1, 1, 300))
    assert kept == [(1, 1, 300, 300)]


def test_estimate_from_runtime_keeps_traces_without_estimates(tmp_path: Path) -> None:
    trace = clean_swf(
        read_swf(write(tmp_path, line(1, 0, 50, 1, 1, -1) + "\n")), estimate_from_runtime=True
    )
    assert [(j.run, j.req) for j in trace.jobs] == [(50, 50)]


def test_missing_machine_size_asks_for_capacity(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="--capacity"):
        clean_swf(read_swf(write(tmp_path, line(1, 0, 5, 1, 1, 9) + "\n", header="")))
