"""sbatch's directive reader, rule by rule (lines, words, getopt, values, GPU arithmetic)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aifactory.errors import Invalid
from aifactory.executors.slurm.sbatch_import import import_sbatch
from aifactory.executors.slurm.sbatch_options import read_directives, split_directive
from aifactory.executors.slurm.sbatch_table import OPTIONS, SHORT
from aifactory.executors.slurm.sbatch_values import (
    parse_memory_gb,
    parse_time_limit,
    read_gres,
    read_memory_mb,
    read_nodes,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "slurm.md"


def opts(*lines: str) -> list[tuple[str, str | None]]:
    directives, _, errors = read_directives("#!/bin/bash\n" + "\n".join(lines) + "\ntrue\n")
    assert errors == []
    return [(d.name, d.value) for d in directives]


def errors(*lines: str) -> list[str]:
    _, _, found = read_directives("#!/bin/bash\n" + "\n".join(lines) + "\ntrue\n")
    return [e.message for e in found]


def imported(*lines: str) -> tuple[dict[str, object], list[tuple[str, str]]]:
    spec, notes = import_sbatch("#!/bin/bash\n" + "\n".join(lines) + "\ntrue\n")
    return dict(spec["resources"]), [(n.directive, n.action) for n in notes]


def refused(*lines: str) -> dict[str, str]:
    with pytest.raises(Invalid) as info:
        import_sbatch("#!/bin/bash\n" + "\n".join(lines) + "\ntrue\n")
    return {d.field: d.message for d in info.value.details}


# --- which lines are directives ---


def test_only_column_zero_sbatch_lines_are_directives_and_reading_stops_at_a_command() -> None:
    assert opts(
        "  #SBATCH -N 8", "\t#SBATCH -N 9", "##SBATCH -N 7", "", "# note", "#SBATCH -N 2"
    ) == [("nodes", "2")]
    text = "#!/bin/bash\n#SBATCH -N 2\necho hi\n#SBATCH -N 5\n"
    assert [(d.name, d.value) for d in read_directives(text)[0]] == [("nodes", "2")]


def test_slurm_magic_word_is_read_and_noted() -> None:
    directives, slurm_lines, _ = read_directives("#!/bin/sh\n#SLURM -N 3\ntrue\n")
    assert [(d.name, d.value) for d in directives] == [("nodes", "3")] and slurm_lines == [2]


def test_sbatch_glued_to_a_word_is_an_invalid_directive_as_in_sbatch() -> None:
    assert errors("#SBATCHX -N 2") == ["sbatch: invalid directive 'X' (not an option)"]


# --- how a line splits into words ---


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (" -N 2\t# two nodes", ["-N", "2"]),
        (" -N 2# glued comment", ["-N", "2"]),
        (" --job-name=a#b -N 2", ["--job-name=a"]),  # '#' ends the line even mid-word
        (' -J "a b#c" -N 2', ["-J", "a b#c", "-N", "2"]),
        (" -J 'x \"y\"'", ["-J", 'x "y"']),
        (r" -J it\"s", ["-J", 'it"s']),
        (r" -J 'a\'b'", ["-J", "a'b"]),  # a backslash escapes inside single quotes too
        (' -J "" -N 2', ["-J"]),  # an empty word ends the line, as in get_argument
        ("", []),
    ],
)
def test_words_split_like_sbatch_get_argument(text: str, words: list[str]) -> None:
    assert split_directive(text) == words


def test_unmatched_quote_and_leading_colon_are_errors() -> None:
    assert "unmatched" in errors('#SBATCH -J "oops')[0]
    assert "':'" in errors("#SBATCH :x")[0]


# --- getopt ---


def test_short_options_attached_separate_and_clustered() -> None:
    assert opts("#SBATCH -N2 -n 8 -vJtrain -p gpu") == [
        ("nodes", "2"),
        ("ntasks", "8"),
        ("verbose", None),
        ("job-name", "train"),
        ("partition", "gpu"),
    ]


def test_a_value_may_start_with_a_dash_and_may_come_from_the_next_line() -> None:
    assert opts("#SBATCH --job-name -x") == [("job-name", "-x")]
    assert opts("#SBATCH --job-name", "#SBATCH foo") == [("job-name", "foo")]


def test_long_option_prefixes_and_aliases() -> None:
    assert opts("#SBATCH --job=x --cpus-per-t=4 --tasks-per-node=2 --exclus") == [
        ("job-name", "x"),
        ("cpus-per-task", "4"),
        ("ntasks-per-node", "2"),
        ("exclusive", None),
    ]


@pytest.mark.parametrize("prefix", ["--ntasks-per", "--tim", "--gpus-per", "--mem-per", "--exc"])
def test_ambiguous_prefix_is_an_error(prefix: str) -> None:
    assert "ambiguous" in errors(f"#SBATCH {prefix}=1")[0]


def test_getopt_errors_are_all_reported() -> None:
    found = errors("#SBATCH --hold=1 --nosuch=1 nodes=2 -Z", "#SBATCH --time")
    assert len(found) == 5
    assert [m.split(":")[1].strip().split()[0] for m in found] == [
        "option",
        "unrecognized",
        "invalid",
        "invalid",
        "option",
    ]


def test_optional_argument_only_with_equals() -> None:
    assert opts("#SBATCH --exclusive=user") == [("exclusive", "user")]
    assert errors("#SBATCH --exclusive user") == [
        "sbatch: invalid directive 'user' (not an option)"
    ]


def test_double_dash_ends_options() -> None:
    assert opts("#SBATCH -N 2 --") == [("nodes", "2")]
    assert "after --" in errors("#SBATCH -- -N 2")[0]


def test_the_option_table_is_sbatch_2205s() -> None:
    assert len(OPTIONS) == 106
    assert set(SHORT) == set("ABCDFGHJLMNOQSVWabcdehikmnopqstvwx")
    assert OPTIONS["tasks-per-node"].alias_of == "ntasks-per-node"


def test_docs_table_gives_every_option_its_policy() -> None:
    docs = DOCS.read_text()
    section = docs[docs.index("## Importing batch scripts") :]
    documented: dict[str, str] = {}
    for row in re.findall(r"^\| (`--.*) \| (\w+)", section, re.MULTILINE):
        for name in re.findall(r"`--([a-z-]+)`", row[0]):
            documented[name] = row[1]
    expected = {n: o.policy for n, o in OPTIONS.items() if not o.alias_of and n != "chdir"}
    assert {n: documented.get(n) for n in expected} == expected


# --- values ---


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("5:30", 330),
        ("1:02:03", 3723),
        ("2-3", 183600),
        ("2-3:4", 183840),
        ("2-3:4:5", 183845),
        ("1-", 86400),
        ("INFINITE", None),
        ("unlimited", None),
        ("-1", None),
        ("0", None),  # sbatch reads a zero limit as no limit
    ],
)
def test_all_slurm_time_formats(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "1:", "::", "1-:3", "1:2:3:4", "1-2-3", "1h"])
def test_bad_times_are_invalid(bad: str) -> None:
    with pytest.raises(Invalid):
        parse_time_limit(bad)


def test_memory_units_in_mib_like_str_to_mbytes() -> None:
    assert (parse_memory_gb("1T"), parse_memory_gb("512M"), parse_memory_gb("1048576K")) == (
        1024.0,
        0.5,
        1.0,
    )
    assert (read_memory_mb("16000"), read_memory_mb("1k"), read_memory_mb("2GB")) == (
        16000,
        1,
        2048,
    )
    for bad in ("1.5G", "lots", "-1", "4X"):
        with pytest.raises(ValueError):
            read_memory_mb(bad)


def test_node_counts_and_gres() -> None:
    assert (read_nodes("4"), read_nodes("2-4"), read_nodes("1k")) == ((4, 4), (2, 4), (1024, 1024))
    assert (read_gres("gpu"), read_gres("gpu:4"), read_gres("gpu:a100:4")) == (
        (1, None),
        (4, None),
        (4, "a100"),
    )
    assert read_gres("gpu:a100") == (1, "a100")
    for bad in ("nvme:1", "gpu:4,nvme:1", "gpu:a:b:4", "gpu:0"):
        with pytest.raises(ValueError):
            read_gres(bad)


# --- resources ---


def test_no_gpu_option_means_no_gpus_and_the_default_time_is_noted() -> None:
    resources, notes = imported("#SBATCH -c 2")
    assert resources["gpus_per_node"] == 0 and resources["time_limit"] == 3600
    assert notes == [("--time", "defaulted")]


def test_gpus_per_task_times_ntasks_is_the_gpu_total() -> None:
    resources, notes = imported("#SBATCH --gpus-per-task=8 --ntasks=4 -t 10")
    assert (resources["nodes"], resources["gpus_per_node"], resources["tasks_per_node"]) == (
        4,
        8,
        1,
    )
    assert notes == [("--ntasks=4", "adjusted")]
    resources, _ = imported("#SBATCH --gpus-per-task=2 -N 2 -n 8 -t 10")
    assert (resources["gpus_per_node"], resources["tasks_per_node"]) == (8, 4)


def test_gpus_total_spreads_evenly_or_is_refused() -> None:
    resources, notes = imported("#SBATCH --gpus=8 --nodes=2 -t 10")
    assert resources["gpus_per_node"] == 4 and notes == [("--gpus=8", "adjusted")]
    assert "divide" in refused("#SBATCH --gpus=3 -N 2 -t 10")["sbatch.--gpus"]


def test_gpus_given_two_ways_must_agree() -> None:
    resources, _ = imported("#SBATCH --gres=gpu:h100:4 --gpus-per-node=h100:4 -t 10")
    assert (resources["gpus_per_node"], resources["gpu_model"]) == (4, "H100")
    assert "one way" in refused("#SBATCH --gres=gpu:4 --gpus-per-node=2 -t 10")["sbatch.--gres"]
    assert "disagree" in str(refused("#SBATCH --gres=gpu:a100:4 --gpus-per-node=h100:4 -t 9"))


def test_ntasks_per_gpu_and_cpus_per_gpu_become_per_node_and_per_task_counts() -> None:
    resources, notes = imported("#SBATCH --gpus-per-node=4 --ntasks-per-gpu=2 -t 10")
    assert resources["tasks_per_node"] == 8 and notes == [("--ntasks-per-gpu=2", "adjusted")]
    resources, _ = imported("#SBATCH --gpus-per-node=2 --cpus-per-gpu=6 -t 10")
    assert resources["cpus_per_task"] == 12
    assert "needs GPUs" in refused("#SBATCH --cpus-per-gpu=6 -t 10")["sbatch.--cpus-per-gpu"]


def test_mem_zero_is_the_whole_node_and_memory_is_one_way() -> None:
    resources, _ = imported("#SBATCH --mem=0 -t 10")
    assert resources["whole_node_memory"] is True and "memory_gb" not in resources
    assert (
        "mutually exclusive"
        in refused("#SBATCH --mem=1G --mem-per-cpu=1G -t 10")["sbatch.--mem-per-cpu"]
    )


def test_exclusive_modes() -> None:
    assert imported("#SBATCH --exclusive -t 1")[0]["exclusive"] is True
    resources, notes = imported("#SBATCH --exclusive=mcs -t 1")
    assert resources["exclusive"] is True and notes == [("--exclusive=mcs", "adjusted")]
    resources, notes = imported("#SBATCH --exclusive=oversubscribe -t 1")
    assert "exclusive" not in resources and notes == [("--exclusive=oversubscribe", "ignored")]
    assert "sbatch.--exclusive" in refused("#SBATCH --exclusive=nodes -t 1")


def test_time_min_must_not_exceed_the_limit() -> None:
    assert "longer" in refused("#SBATCH -t 10 --time-min=20")["sbatch.--time-min"]


def test_platform_owned_options_are_replaced_and_others_refused_all_at_once() -> None:
    _, notes = imported("#SBATCH -p gpu -A acct -o o.txt -e e.txt -t 1")
    assert {action for _, action in notes} == {"replaced"} and len(notes) == 4
    found = refused("#SBATCH --mail-user=a@b.eu -d afterok:1 -w n1 -b now -H --wrap=x -t 1")
    assert sorted(found) == [
        "sbatch.--begin",
        "sbatch.--dependency",
        "sbatch.--hold",
        "sbatch.--nodelist",
        "sbatch.--wrap",
    ]
    assert all(message.strip() for message in found.values())


def test_script_level_refusals_name_the_script() -> None:
    for text in ("", "   \n", "#SBATCH -N 1\ntrue\n", "#!/bin/sh\r\ntrue\r\n", "#!/bin/sh\0"):
        with pytest.raises(Invalid) as info:
            import_sbatch(text)
        assert info.value.details[0].field == "script"


def test_names_and_workdir() -> None:
    spec, _ = import_sbatch("#!/bin/bash\n#SBATCH -t 1\ntrue\n", default_name="my train.sh")
    assert spec["name"] == "my-train.sh"
    spec, notes = import_sbatch("#!/bin/bash\n#SBATCH -t 1 -D ./runs/../out\ntrue\n")
    assert spec["workdir"] == "out" and ("--chdir=./runs/../out", "adjusted") in [
        (n.directive, n.action) for n in notes
    ]
    assert "sbatch.--chdir" in refused("#SBATCH -t 1 -D ../elsewhere")


def test_the_spec_keeps_the_whole_script_and_validates() -> None:
    from aifactory.domain.jobspec import parse_spec

    text = "#!/bin/bash -l\n#SBATCH -N 2 --gpus-per-node=4 -t 5 --array=0-3%2\nsrun hostname\n"
    spec, _ = import_sbatch(text)
    assert spec["script"] == text
    job = parse_spec({**spec, "project": "P", "args": ["--lr", "0.1"]})
    assert job.tasks() == ([0, 1, 2, 3], 2) and job.resources.gpus == 8
