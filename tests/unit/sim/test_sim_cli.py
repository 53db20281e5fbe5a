"""`aif sim run` / `aif sim compare` through Typer's test runner."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from aifactory.cli.sim import app

runner = CliRunner()


def swf(tmp_path: Path, extra: str = "", name: str = "t.swf") -> Path:
    rows = [
        f"{i} {i * 10} 0 {5 + i % 7} {1 + i % 4} -1 -1 {1 + i % 4} 60 -1 1 {i % 3} 1 -1 1 -1 -1 -1"
        for i in range(1, 60)
    ]
    path = tmp_path / name
    text = "; MaxProcs: 4\n" + "\n".join(rows) + "\n" + extra
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    return path


def test_run_prints_a_table_and_writes_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["run", "--trace", str(swf(tmp_path)), "--policy", "easy", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "overall" in result.output
    names = {
        "metrics.json",
        "jobs.csv",
        "timeseries.csv",
        "utilization.png",
        "queue_length.png",
        "wait_cdf.png",
    }
    assert names <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text())["overall"]["jobs"] == 59


def test_compare_writes_one_plot_and_one_table(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--trace", str(swf(tmp_path)), "--policy", "fcfs", "--policy", "easy",
            "--policy", "conservative", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "compare.png").stat().st_size > 0
    assert set(json.loads((out / "compare.json").read_text())) == {"fcfs", "easy", "conservative"}


def test_federation_run_from_a_sites_file(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, gpus: 4}\n  - {name: b, gpus: 2, policy: fcfs}\n")
    args = [
        "run",
        "--trace",
        str(swf(tmp_path)),
        "--sites",
        str(sites),
        "--placement",
        "least-loaded",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_unknown_policy_exits_2_naming_the_option(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--trace", str(swf(tmp_path)), "--policy", "lifo"])
    assert result.exit_code == 2
    assert "unknown scheduling policy 'lifo'" in result.output
    assert "Traceback" not in result.output


def test_unknown_placement_exits_2(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, gpus: 4}\n")
    args = ["run", "--trace", str(swf(tmp_path)), "--sites", str(sites), "--placement", "random"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "unknown placement policy 'random'" in result.output


def test_malformed_line_exits_2_with_file_and_line_and_lenient_skips_it(tmp_path: Path) -> None:
    path = swf(tmp_path, extra="this is not swf\n")
    result = runner.invoke(app, ["run", "--trace", str(path)])
    assert result.exit_code == 2
    assert "t.swf:61: malformed SWF line" in result.output
    lenient = runner.invoke(app, ["run", "--trace", str(path), "--lenient"])
    assert lenient.exit_code == 0, lenient.output
    assert "skipped 1 malformed line" in lenient.output


def test_truncated_gzip_exits_2(tmp_path: Path) -> None:
    path = swf(tmp_path, name="t.swf.gz")
    path.write_bytes(path.read_bytes()[:-20])
    result = runner.invoke(app, ["run", "--trace", str(path)])
    assert result.exit_code == 2
    assert "truncated" in result.output


def test_missing_trace_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--trace", str(tmp_path / "none.swf")])
    assert result.exit_code == 2
    assert "none.swf: cannot read trace" in result.output


def test_zero_capacity_site_exits_2(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, gpus: 0}\n")
    result = runner.invoke(app, ["run", "--trace", str(swf(tmp_path)), "--sites", str(sites)])
    assert result.exit_code == 2
    assert "zero capacity" in result.output


def test_job_wider_than_every_site_exits_2(tmp_path: Path) -> None:
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: a, gpus: 2}\n")
    result = runner.invoke(app, ["run", "--trace", str(swf(tmp_path)), "--sites", str(sites)])
    assert result.exit_code == 2
    assert "needs 3 units, the largest operational site has 2" in result.output


def test_run_and_compare_print_their_json_alone_with_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "--trace", str(swf(tmp_path)), "--json", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((out / "metrics.json").read_text())
    assert "wrote" in result.stderr  # notes go to stderr
    args = ["compare", "--trace", str(swf(tmp_path)), "--policy", "fcfs", "--json",
            "--out", str(tmp_path / "cmp")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((tmp_path / "cmp" / "compare.json").read_text())
