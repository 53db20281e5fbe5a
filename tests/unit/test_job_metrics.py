"""Training metrics from a job's output: which lines count, which values, and the SVG drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aifactory.domain.job_metrics import MAX_POINTS, Series, parse_line
from aifactory.portal.charts_metrics import latest, loss_chart
from aifactory.services import job_metrics
from aifactory.services.job_metrics import read_log
from aifactory.services.job_metrics_views import JobMetrics, MetricSeries


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("step=120 loss=2.314", (120, {"loss": 2.314})),
        (
            "step=5 loss=1.5 lr=3e-3 tokens/s=1200",
            (5, {"loss": 1.5, "lr": 0.003, "tokens/s": 1200}),
        ),
        ("[rank0] eval step=100 val_loss=2.10, took 3s", (100, {"val_loss": 2.1})),
        ("checkpoint step=20 path=ckpt.pt", (20, {})),  # not a number: not a value
        ("step=7 loss=nan grad=inf acc=0.5", (7, {"acc": 0.5})),  # not finite: left out
        ("step=3 loss=-0.25 delta=+1.5e+2", (3, {"loss": -0.25, "delta": 150.0})),
        ('{"step": 9, "loss": 0.75, "note": "x", "ok": true}', (9, {"loss": 0.75})),
        ("  step=4\tloss=1.0  ", (4, {"loss": 1.0})),
    ],
)
def test_lines_with_a_step_give_their_numeric_pairs(
    line: str, expected: tuple[int, dict[str, float]]
) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "loss=2.3 without a step",
        "substep=4 loss=1.0",  # a longer key is not step
        "step=nan loss=1.0",
        "step=2.5 loss=1.0",
        "step=-1 loss=1.0",
        "step=12abc loss=1.0",
        '{"loss": 1.0}',
        "{not json step=3",
        "",
    ],
)
def test_lines_without_a_usable_step_are_ignored(line: str) -> None:
    assert parse_line(line) is None


def test_a_later_value_at_the_same_step_wins_and_long_series_are_thinned() -> None:
    series = Series()
    series.feed(["step=1 loss=3.0", "junk", "step=1 loss=2.5", "done step=2 loss=2.0"])
    assert series.points["loss"] == {1: 2.5, 2: 2.0}
    assert series.last("loss") == (2, 2.0)
    series.feed(f"step={s} loss=1.0" for s in range(3, MAX_POINTS + 10))
    assert len(series.points["loss"]) <= MAX_POINTS
    assert max(series.points["loss"]) > MAX_POINTS  # the newest points are kept


def test_the_log_is_read_incrementally_and_a_partial_last_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_text("start step=0 world_size=1\nstep=1 loss=4.0\nstep=2 lo")
    _, series = read_log(log)
    assert {s.key: s.steps for s in series} == {"loss": [1], "world_size": [0]}
    with log.open("a") as fh:
        fh.write("ss=3.5\nstep=3 loss=3.0")
    _, series = read_log(log)
    assert series[0].key == "loss" and series[0].values == [4.0, 3.5]
    _, series = read_log(log, final=True)  # the job ended: its last line counts
    assert series[0].steps == [1, 2, 3]


def test_a_long_log_is_parsed_from_its_tail_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_metrics, "FIRST_READ", 100)
    log = tmp_path / "big.log"
    log.write_text("".join(f"step={s} loss={10 - s / 10}\n" for s in range(1, 41)))
    truncated, series = read_log(log)
    assert truncated
    steps = series[0].steps
    assert steps[-1] == 40 and steps[0] > 30  # no half line at the cut
    assert len(steps) == 41 - steps[0]


def _metrics(*series: MetricSeries) -> JobMetrics:
    return JobMetrics(job_id=7, attempt=1, finished=False, truncated=False, series=list(series))


def test_the_chart_draws_the_losses_with_labelled_axes() -> None:
    metrics = _metrics(
        MetricSeries(key="loss", steps=[1, 10, 20], values=[4.2, 3.0, 2.314]),
        MetricSeries(key="lr", steps=[1, 10, 20], values=[0.1, 0.1, 0.1]),
        MetricSeries(key="val_loss", steps=[20], values=[2.5]),
    )
    svg = loss_chart(metrics, "Job 7 <training>")
    assert svg is not None
    root = ET.fromstring(str(svg))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.find("s:title", ns).text == "Job 7 <training>"  # type: ignore[union-attr]
    texts = {t.text for t in root.iterfind(".//s:text", ns)}
    assert {"step", "loss", "val_loss"} <= texts and "lr" not in texts
    (line, _) = [p for p in root.iterfind(".//s:polyline", ns)]
    assert len(line.get("points", "").split()) == 3
    assert latest(metrics) == "step 20: loss 2.314, val_loss 2.5"


def test_nothing_to_draw_gives_no_chart() -> None:
    assert loss_chart(_metrics(), "empty") is None
    assert latest(_metrics()) == ""
    only_lr = _metrics(MetricSeries(key="lr", steps=[1, 2], values=[0.1, 0.2]))
    assert latest(only_lr) == "step 2: lr 0.2"
    assert "lr" in str(loss_chart(only_lr, "lr only"))
