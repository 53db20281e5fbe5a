"""sacctmgr command objects on recorded outputs, and #SBATCH import."""

from __future__ import annotations

import pytest
from slurmhelpers import output

from aifactory.errors import Invalid, NotFound
from aifactory.executors.slurm.accounts import (
    SacctmgrAddAccount,
    SacctmgrAddUser,
    SacctmgrSetLimit,
    SacctmgrShowAccount,
    SiteAccounts,
    gpu_minutes,
)
from aifactory.executors.slurm.sbatch_import import import_sbatch, parse_memory_gb, parse_time_limit
from aifactory.executors.slurm.transport import CommandResult


def test_add_account_argv_carries_the_gpu_minutes_limit() -> None:
    argv = SacctmgrAddAccount("ehpc-1", 600).build()
    assert argv[:5] == ["sacctmgr", "-i", "add", "account", "ehpc-1"]
    assert argv[-1] == "GrpTRESMins=gres/gpu=600"


def test_existing_account_and_user_are_success() -> None:
    assert (
        SacctmgrAddAccount("aif-fixture", 60).parse(*output("factory2_sacctmgr_add_existing"))
        is False
    )
    assert SacctmgrAddUser("u", "aif-fixture").parse(" Nothing new added.\n", "", 1) is False


def test_modifying_a_missing_account_is_not_found() -> None:
    with pytest.raises(NotFound):
        SacctmgrSetLimit("aif-nosuch", 1).parse(*output("factory2_sacctmgr_modify_missing"))


def test_show_reads_users() -> None:
    limit = SacctmgrShowAccount("aif-default").parse(*output("factory2_sacctmgr_show"))
    assert limit is not None and limit.users == ("aifjob", "root") and limit.gpu_minutes is None
    assert SacctmgrShowAccount("other").parse(*output("factory2_sacctmgr_show")) is None


def test_gpu_hours_round_down_to_minutes() -> None:
    assert (gpu_minutes(1.5), gpu_minutes(0.0), gpu_minutes(0.999)) == (90, 0, 59)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(0, "", "")


def test_ensure_account_creates_sets_limit_and_adds_users_with_safe_names() -> None:
    rec = Recorder()
    accounts = SiteAccounts(rec, account_prefix="aif-")
    assert accounts.ensure_account("EHPC-1", 120, ["alice"]) == "aif-ehpc-1"
    assert [c[3] for c in rec.calls] == ["account", "account", "show", "user"]
    with pytest.raises(Invalid):
        accounts.add_user("EHPC-1", "alice account=root")
    with pytest.raises(Invalid):
        accounts.ensure_account("x y", 1)


SCRIPT = """#!/bin/bash
# a comment
#SBATCH -J train -N 2
#SBATCH --gres=gpu:h100:4
#SBATCH --time 1-02:30:00
#SBATCH --mem=64G -c 8 --ntasks-per-node=4
#SBATCH -o out.%j --error=err.%j
#SBATCH --exclusive --qos=high
srun python train.py
#SBATCH --nodes=99
"""


def test_import_reads_directives_until_the_first_command() -> None:
    spec, notes = import_sbatch(SCRIPT)
    assert spec["name"] == "train"
    assert spec["resources"] == {
        "nodes": 2,
        "gpus_per_node": 4,
        "gpu_model": "H100",
        "tasks_per_node": 4,
        "cpus_per_task": 8,
        "memory_gb": 64.0,
        "exclusive": True,
        "time_limit": 95400,
    }
    assert spec["script"] == SCRIPT  # the whole script runs, as under sbatch
    assert [(n.directive, n.action) for n in notes] == [
        ("--output=out.%j", "replaced"),
        ("--error=err.%j", "replaced"),
        ("--qos=high", "ignored"),
        ("--gres=gpu:h100:4", "adjusted"),
    ]


@pytest.mark.parametrize(
    ("lines", "key", "value"),
    [
        ("#SBATCH --nodes=3", "nodes", 3),
        ("#SBATCH -N4", "nodes", 4),
        ("#SBATCH --gpus-per-node=2", "gpus_per_node", 2),
        ("#SBATCH -N 2 --gpus=8", "gpus_per_node", 4),
        ("#SBATCH -G a100:2", "gpu_model", "A100"),
        ("#SBATCH --gres=gpu", "gpus_per_node", 1),
        ("#SBATCH -n 8 -c 2", "cpus_per_task", 2),
        ("#SBATCH -n 8 -c 2", "tasks_per_node", 8),
        ("#SBATCH -t 90", "time_limit", 5400),
        ("#SBATCH --mem 2048", "memory_gb", 2.0),
        ("#SBATCH --mem=0", "whole_node_memory", True),
    ],
)
def test_import_option_forms(lines: str, key: str, value: object) -> None:
    spec, _ = import_sbatch(f"#!/bin/bash\n{lines}\ntrue\n")
    assert spec["resources"][key] == value


def test_uneven_gpus_over_nodes_are_refused() -> None:
    with pytest.raises(Invalid) as info:
        import_sbatch("#!/bin/bash\n#SBATCH -N 2 --gpus=3\ntrue\n")
    assert [d.field for d in info.value.details] == ["sbatch.--gpus"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 300),
        ("5:30", 330),
        ("1:02:03", 3723),
        ("2-3", 183600),
        ("2-3:4", 183840),
        ("2-3:4:5", 183845),
        ("INFINITE", None),
    ],
)
def test_all_slurm_time_formats(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        "#SBATCH --time=soon",
        "#SBATCH --mem=lots",
        "#SBATCH --nodes=two",
        "#SBATCH --gres=fpga:1",
        "#SBATCH --time=UNLIMITED",
    ],
)
def test_bad_values_are_invalid(bad: str) -> None:
    with pytest.raises(Invalid):
        import_sbatch(f"#!/bin/bash\n{bad}\ntrue\n")


def test_memory_units() -> None:
    assert (parse_memory_gb("1T"), parse_memory_gb("512M"), parse_memory_gb("1048576K")) == (
        1024.0,
        0.5,
        1.0,
    )
