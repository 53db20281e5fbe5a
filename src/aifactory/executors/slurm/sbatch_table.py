"""The options sbatch 22.05 accepts (``src/common/slurm_opt.c``), each with what the platform
does with it: ``honoured`` (it becomes part of the job spec), ``replaced`` (the platform owns
it), ``ignored`` (it changes nothing the job relies on) or ``refused`` (the job would not run as
the script says). ``docs/slurm.md`` has the same table for users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NO", "OPTIONAL", "OPTIONS", "REQUIRED", "SHORT", "Option", "Policy"]

Policy = Literal["honoured", "replaced", "ignored", "refused"]
NO, REQUIRED, OPTIONAL = 0, 1, 2


@dataclass(frozen=True)
class Option:
    """One sbatch option: how getopt reads it and what the platform does with it."""

    name: str
    has_arg: int
    short: str | None
    policy: Policy
    message: str = ""
    alias_of: str | None = None


_NODE_SHAPE = "this node shape cannot be expressed; use nodes, tasks, cpus-per-task, constraint"
_ENV = "the job's environment is the spec's `environment`; the submitting shell's is not sent"
_PLACEMENT = "the broker chooses the factory and the nodes; use --constraint for node features"
_TUNING = "a scheduling or binding hint; the site's defaults apply"
_REFUSED: dict[str, str] = {
    "begin": "the platform starts a job as soon as it is placed; it cannot defer the start",
    "deadline": "the platform cannot cancel a job that misses a deadline",
    "dependency": "dependencies name one site's Slurm job ids; submit the next job when "
    "this one has ended",
    "reservation": "a reservation belongs to one site; the broker places the job",
    "hold": "the platform runs a job once it is placed; submit it when it should run",
    "input": "the job's standard input is empty",
    "licenses": "site licenses are not managed by the platform",
    "container": "OCI bundles are not supported; use the spec's container_image",
    "uid": "jobs run as the person who submitted them",
    "gid": "jobs run as the person who submitted them",
    "batch": "batch-host features are not supported",
    "bb": "burst buffers are not supported",
    "bbf": "burst buffers are not supported",
    "tmp": "local disk space is not a resource the platform places",
    "wrap": "the batch script is the job; --wrap would replace it",
    "export-file": "files on the submitting host are not read",
    "test-only": "the platform would really submit the job; use aif submit --dry-run",
    "context": "SELinux contexts are not supported",
    "help": "not a job option (sbatch would print its help and submit nothing)",
    "usage": "not a job option (sbatch would print its usage and submit nothing)",
    "version": "not a job option (sbatch would print its version and submit nothing)",
    **dict.fromkeys(("nodelist", "exclude", "nodefile", "clusters", "cluster"), _PLACEMENT),
    "cluster-constraint": _PLACEMENT,
    **dict.fromkeys(
        (
            "mincpus",
            "sockets-per-node",
            "cores-per-socket",
            "threads-per-core",
            "extra-node-info",
            "ntasks-per-core",
            "ntasks-per-socket",
            "ntasks-per-tres",
            "gpus-per-socket",
            "core-spec",
            "thread-spec",
            "network",
        ),
        _NODE_SHAPE,
    ),
}
_REPLACED: dict[str, str] = {
    "account": "the project's account is charged",
    "partition": "the broker places the job",
    "output": "the platform keeps the job's logs (aif logs)",
    "error": "the platform keeps the job's logs (aif logs)",
}
_IGNORED: dict[str, str] = {
    "mail-type": "the platform sends no mail; follow the job with aif submit --follow",
    "mail-user": "the platform sends no mail; follow the job with aif submit --follow",
    "qos": "the site's quality of service for the project applies",
    "requeue": "the spec's retry policy decides whether a failed attempt runs again",
    "no-requeue": "the spec's retry policy decides whether a failed attempt runs again",
    "signal": "no signal is sent before the time limit; save checkpoints periodically",
    "open-mode": "the platform appends to the logs it keeps",
    "wait": "use aif submit --follow to wait for the job",
    "comment": "site bookkeeping; the platform keeps its own",
    "wckey": "site bookkeeping; the platform keeps its own",
    "mcs-label": "site bookkeeping; the platform keeps its own",
    "nice": "the platform and the site order jobs",
    "priority": "the platform and the site order jobs",
    "parsable": "output format of sbatch itself",
    "quiet": "output format of sbatch itself",
    "verbose": "output format of sbatch itself",
    "ignore-pbs": "#PBS lines are never read",
    "kill-on-invalid-dep": "dependencies are not supported",
    **dict.fromkeys(("export", "get-user-env", "propagate"), _ENV),
    **dict.fromkeys(
        (
            "hint",
            "distribution",
            "gpu-bind",
            "mem-bind",
            "cpu-freq",
            "gpu-freq",
            "acctg-freq",
            "profile",
            "spread-job",
            "use-min-nodes",
            "contiguous",
            "switches",
            "power",
            "delay-boot",
            "reboot",
            "gres-flags",
            "oversubscribe",
            "overcommit",
            "no-kill",
            "prefer",
            "wait-all-nodes",
        ),
        _TUNING,
    ),
}
_HONOURED = [
    "array",
    "chdir",
    "constraint",
    "cpus-per-gpu",
    "cpus-per-task",
    "exclusive",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "gres",
    "job-name",
    "mem",
    "mem-per-cpu",
    "mem-per-gpu",
    "nodes",
    "ntasks",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "time",
    "time-min",
]
# (name, has_arg, short) for every option sbatch 22.05 accepts, in slurm_opt.c's order.
_GETOPT: tuple[tuple[str, int, str | None], ...] = (
    ("account", REQUIRED, "A"),
    ("acctg-freq", REQUIRED, None),
    ("array", REQUIRED, "a"),
    ("batch", REQUIRED, None),
    ("begin", REQUIRED, "b"),
    ("bb", REQUIRED, None),
    ("bbf", REQUIRED, None),
    ("cluster-constraint", REQUIRED, None),
    ("chdir", REQUIRED, "D"),
    ("cluster", REQUIRED, None),
    ("clusters", REQUIRED, "M"),
    ("comment", REQUIRED, None),
    ("container", REQUIRED, None),
    ("context", REQUIRED, None),
    ("contiguous", NO, None),
    ("constraint", REQUIRED, "C"),
    ("core-spec", REQUIRED, "S"),
    ("cores-per-socket", REQUIRED, None),
    ("cpu-freq", REQUIRED, None),
    ("cpus-per-gpu", REQUIRED, None),
    ("cpus-per-task", REQUIRED, "c"),
    ("deadline", REQUIRED, None),
    ("delay-boot", REQUIRED, None),
    ("dependency", REQUIRED, "d"),
    ("distribution", REQUIRED, "m"),
    ("error", REQUIRED, "e"),
    ("exclude", REQUIRED, "x"),
    ("exclusive", OPTIONAL, None),
    ("export", REQUIRED, None),
    ("export-file", REQUIRED, None),
    ("extra-node-info", REQUIRED, "B"),
    ("get-user-env", OPTIONAL, None),
    ("gid", REQUIRED, None),
    ("gpu-bind", REQUIRED, None),
    ("gpu-freq", REQUIRED, None),
    ("gpus", REQUIRED, "G"),
    ("gpus-per-node", REQUIRED, None),
    ("gpus-per-socket", REQUIRED, None),
    ("gpus-per-task", REQUIRED, None),
    ("gres", REQUIRED, None),
    ("gres-flags", REQUIRED, None),
    ("help", NO, "h"),
    ("hint", REQUIRED, None),
    ("hold", NO, "H"),
    ("ignore-pbs", NO, None),
    ("input", REQUIRED, "i"),
    ("job-name", REQUIRED, "J"),
    ("kill-on-invalid-dep", REQUIRED, None),
    ("licenses", REQUIRED, "L"),
    ("mail-type", REQUIRED, None),
    ("mail-user", REQUIRED, None),
    ("mcs-label", REQUIRED, None),
    ("mem", REQUIRED, None),
    ("mem-bind", REQUIRED, None),
    ("mem-per-cpu", REQUIRED, None),
    ("mem-per-gpu", REQUIRED, None),
    ("mincpus", REQUIRED, None),
    ("network", REQUIRED, None),
    ("nice", OPTIONAL, None),
    ("no-kill", OPTIONAL, "k"),
    ("no-requeue", NO, None),
    ("nodefile", REQUIRED, "F"),
    ("nodelist", REQUIRED, "w"),
    ("nodes", REQUIRED, "N"),
    ("ntasks", REQUIRED, "n"),
    ("ntasks-per-core", REQUIRED, None),
    ("ntasks-per-gpu", REQUIRED, None),
    ("ntasks-per-node", REQUIRED, None),
    ("ntasks-per-socket", REQUIRED, None),
    ("ntasks-per-tres", REQUIRED, None),
    ("open-mode", REQUIRED, None),
    ("output", REQUIRED, "o"),
    ("overcommit", NO, "O"),
    ("oversubscribe", NO, "s"),
    ("parsable", NO, None),
    ("partition", REQUIRED, "p"),
    ("power", REQUIRED, None),
    ("prefer", REQUIRED, None),
    ("priority", REQUIRED, None),
    ("profile", REQUIRED, None),
    ("propagate", OPTIONAL, None),
    ("qos", REQUIRED, "q"),
    ("quiet", NO, "Q"),
    ("reboot", NO, None),
    ("requeue", NO, None),
    ("reservation", REQUIRED, None),
    ("signal", REQUIRED, None),
    ("sockets-per-node", REQUIRED, None),
    ("spread-job", NO, None),
    ("switches", REQUIRED, None),
    ("tasks-per-node", REQUIRED, None),
    ("test-only", NO, None),
    ("thread-spec", REQUIRED, None),
    ("threads-per-core", REQUIRED, None),
    ("time", REQUIRED, "t"),
    ("time-min", REQUIRED, None),
    ("tmp", REQUIRED, None),
    ("uid", REQUIRED, None),
    ("use-min-nodes", NO, None),
    ("verbose", NO, "v"),
    ("version", NO, "V"),
    ("usage", NO, None),
    ("wait", NO, "W"),
    ("wait-all-nodes", REQUIRED, None),
    ("wckey", REQUIRED, None),
    ("wrap", REQUIRED, None),
)
# Same getopt value as --ntasks-per-node in slurm_opt.c, so the same option.
_ALIASES = {"tasks-per-node": "ntasks-per-node"}


def _option(name: str, has_arg: int, short: str | None) -> Option:
    canonical = _ALIASES.get(name, name)
    tables: tuple[tuple[Policy, dict[str, str]], ...] = (
        ("refused", _REFUSED),
        ("replaced", _REPLACED),
        ("ignored", _IGNORED),
    )
    for policy, table in tables:
        if canonical in table:
            return Option(name, has_arg, short, policy, table[canonical], _ALIASES.get(name))
    if canonical not in _HONOURED:
        raise AssertionError(f"sbatch option {name!r} has no policy")  # caught at import
    return Option(name, has_arg, short, "honoured", "", _ALIASES.get(name))


OPTIONS: dict[str, Option] = {name: _option(name, arg, short) for name, arg, short in _GETOPT}
SHORT: dict[str, Option] = {o.short: o for o in OPTIONS.values() if o.short}
