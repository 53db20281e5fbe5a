"""The resources of a batch script's directives, in the job spec's terms.

Read as sbatch reads them where the spec can say the same thing; where it cannot, the
directive is adjusted (with a note saying how) or refused. Rules chosen here, not by sbatch:

* a node range ``2-4`` is its minimum;
* tasks fill nodes evenly (``--ntasks`` over ``--nodes`` must divide; otherwise refused);
* ``--ntasks`` without ``--nodes`` is one node, except with ``--gpus-per-task``: one task per
  node then, so ``--gpus-per-task=8 --ntasks=4`` is 4 nodes x 8 GPUs;
* ``--gpus`` (a job total) is spread evenly over the nodes, and refused when it does not divide;
* GPUs given several ways (``--gres``, ``--gpus-per-node``, ``--gpus``, ``--gpus-per-task``)
  must agree, and a GPU type is the platform's (upper-case) GPU model;
* ``--cpus-per-gpu`` and ``--ntasks-per-gpu`` become per-task and per-node counts;
* a job needs a finite time limit; none given is the platform's default, with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from aifactory.domain.jobspec import Resources
from aifactory.errors import FieldError, Invalid
from aifactory.executors.slurm.sbatch_options import Directive
from aifactory.executors.slurm.sbatch_table import OPTIONS
from aifactory.executors.slurm.sbatch_values import (
    read_count,
    read_gpus,
    read_gres,
    read_memory_mb,
    read_nodes,
    read_seconds,
)

__all__ = ["DEFAULT_TIME_LIMIT_S", "Action", "Note", "Reading", "resources"]

Action = Literal["replaced", "refused", "ignored", "defaulted", "adjusted"]
T = TypeVar("T")
DEFAULT_TIME_LIMIT_S: int = Resources.model_fields["time_limit"].default
_MAX_TIME_S = 366 * 86400


@dataclass(frozen=True)
class Note:
    """What happened to one directive that is not simply honoured."""

    directive: str
    action: Action
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"directive": self.directive, "action": self.action, "message": self.message}


class Reading:
    """The directives of one script (the last of each honoured option wins, as in sbatch)."""

    def __init__(self) -> None:
        self.notes: list[Note] = []
        self.last: dict[str, Directive] = {}

    def note(self, directive: str, action: Action, message: str) -> None:
        self.notes.append(Note(directive, action, message))

    def refuse(self, directive: str, message: str) -> None:
        self.note(directive, "refused", message)

    def take(self, d: Directive) -> None:
        option = OPTIONS[d.name]
        if option.policy == "honoured":
            self.last[d.name] = d
        elif option.policy == "refused":
            self.refuse(d.text, f"{d.text} refused: {option.message}")
        else:
            self.note(d.text, option.policy, f"{d.text} {option.policy}: {option.message}")

    def text(self, name: str) -> str:
        return self.last[name].text

    def value(self, name: str, reader: Callable[[str], T]) -> T | None:
        """The option's value read by ``reader``; ``None`` when absent or refused."""
        d = self.last.get(name)
        if d is None:
            return None
        try:
            return reader(d.value or "")
        except ValueError as exc:
            self.refuse(d.text, f"{d.text} refused: {exc}")
            return None

    def invalid(self) -> Invalid:
        refused = [n for n in self.notes if n.action == "refused"]
        details = [
            FieldError(f"sbatch.{n.directive.split('=', 1)[0]}", "sbatch", n.message)
            for n in refused
        ]
        names = ", ".join(n.directive for n in refused)
        # A default applies to a job that is created; none is, so it is not mentioned.
        notes = [n.as_dict() for n in self.notes if n.action != "defaulted"]
        return Invalid(
            f"the batch script cannot run as written: {names}", details, {"notes": notes}
        )


def _finite_seconds(value: str) -> int:
    seconds = read_seconds(value)
    if seconds is None:
        raise ValueError("a job needs a finite time limit (GPU-hours are charged to a budget)")
    if seconds > _MAX_TIME_S:
        raise ValueError(f"at most {_MAX_TIME_S // 86400} days")
    return seconds


def _layout(imp: Reading) -> tuple[int, int | None]:
    """Nodes and tasks per node (``None``: sbatch's default of one)."""
    nodes = imp.value("nodes", read_nodes)
    ntasks = imp.value("ntasks", read_count)
    per_node = imp.value("ntasks-per-node", read_count)
    if nodes is not None:
        if nodes[1] != nodes[0]:
            msg = f"the job gets {nodes[0]} nodes, the least the range allows"
            imp.note(imp.text("nodes"), "adjusted", f"{imp.text('nodes')} adjusted: {msg}")
        return nodes[0], _tasks_on(imp, nodes[0], ntasks, per_node)
    if ntasks is None:
        return 1, per_node
    where = imp.text("ntasks")
    if "gpus-per-task" in imp.last and per_node is None:
        if ntasks > 1:
            msg = f"with --gpus-per-task and no --nodes, one task on each of {ntasks} nodes"
            imp.note(where, "adjusted", f"{where} adjusted: {msg} (give --nodes to choose)")
        return ntasks, 1
    if per_node is None:
        if ntasks > 1:
            msg = f"without --nodes, all {ntasks} tasks on one node (sbatch may spread them)"
            imp.note(where, "adjusted", f"{where} adjusted: {msg}; give --nodes to choose")
        return 1, ntasks
    if ntasks % per_node:
        imp.refuse(where, f"{where} refused: {ntasks} tasks do not fill nodes of {per_node}")
    return -(-ntasks // per_node), per_node


def _tasks_on(imp: Reading, nodes: int, ntasks: int | None, per_node: int | None) -> int | None:
    if ntasks is None:
        return per_node
    where = imp.text("ntasks")
    if per_node is not None and ntasks != nodes * per_node:
        msg = f"{nodes} nodes x {per_node} tasks per node is not {ntasks} tasks; give one"
        imp.refuse(where, f"{where} refused: {msg}")
    elif per_node is None and ntasks % nodes:
        msg = f"{ntasks} tasks do not divide evenly over {nodes} nodes; give --ntasks-per-node"
        imp.refuse(where, f"{where} refused: {msg}")
    return per_node if per_node is not None else max(1, ntasks // nodes)


def _per_node_of_total(imp: Reading, total: int, nodes: int) -> int:
    where = imp.text("gpus")
    if total % nodes:
        msg = f"{total} GPUs do not divide evenly over {nodes} nodes; give --gpus-per-node"
        imp.refuse(where, f"{where} refused: {msg}")
    elif nodes > 1:
        msg = f"{total // nodes} GPUs on each of the {nodes} nodes"
        imp.note(where, "adjusted", f"{where} adjusted: {msg}")
    return max(1, total // nodes)


def _gpu_requests(imp: Reading, nodes: int, tasks: int | None) -> list[tuple[str, int, str | None]]:
    """(directive, GPUs per node, type) for each GPU option given."""
    found: list[tuple[str, int, str | None]] = []
    for name in ("gpus-per-node", "gres", "gpus", "gpus-per-task"):
        got = imp.value(name, read_gres if name == "gres" else read_gpus)
        if got is None:
            continue
        count, kind = got
        if name == "gpus":
            count = _per_node_of_total(imp, count, nodes)
        elif name == "gpus-per-task":
            count *= tasks or 1
        found.append((imp.text(name), count, kind))
    return found


def _gpus(imp: Reading, nodes: int, tasks: int | None) -> tuple[int, str | None]:
    """GPUs per node and GPU model; GPUs given several ways must agree."""
    found = _gpu_requests(imp, nodes, tasks)
    if not found:
        return 0, None
    first, count, _ = found[0]
    for where, other, _ in found[1:]:
        if other != count:
            msg = f"{other} GPUs per node, but {first} asks for {count}; give GPUs one way"
            imp.refuse(where, f"{where} refused: {msg}")
    typed = [(where, kind) for where, _, kind in found if kind]
    models = {kind.upper() for _, kind in typed}
    if len(models) > 1:
        imp.refuse(typed[-1][0], f"{typed[-1][0]} refused: GPU types {sorted(models)} disagree")
    if len(models) != 1:
        return count, None
    model = models.pop()
    where, kind = typed[0]
    if kind != model:  # Slurm GRES types are site names; the platform's models are upper case
        msg = f"GPU type {kind} is the platform's GPU model {model} (only partitions with it)"
        imp.note(where, "adjusted", f"{where} adjusted: {msg}")
    return count, model


def _tasks_per_gpu(imp: Reading, gpus: int, tasks: int | None) -> int | None:
    per_gpu = imp.value("ntasks-per-gpu", read_count)
    if per_gpu is None:
        return tasks
    where = imp.text("ntasks-per-gpu")
    clash = [f"--{n}" for n in ("ntasks", "ntasks-per-node", "gpus-per-task") if n in imp.last]
    if clash or not gpus:
        why = f"it cannot be combined with {', '.join(clash)}" if clash else "it needs GPUs"
        imp.refuse(where, f"{where} refused: {why}")
        return tasks
    msg = f"{per_gpu * gpus} tasks per node ({per_gpu} for each of {gpus} GPUs)"
    imp.note(where, "adjusted", f"{where} adjusted: {msg}")
    return per_gpu * gpus


def _cpus(imp: Reading, gpus: int, tasks: int | None) -> int | None:
    per_task = imp.value("cpus-per-task", read_count)
    per_gpu = imp.value("cpus-per-gpu", read_count)
    if per_gpu is None:
        return per_task
    where, tasks = imp.text("cpus-per-gpu"), tasks or 1
    if per_task is not None or not gpus or (per_gpu * gpus) % tasks:
        why = (
            "give --cpus-per-task or --cpus-per-gpu, not both"
            if per_task is not None
            else "it needs GPUs"
            if not gpus
            else f"{per_gpu * gpus} CPUs do not divide over {tasks} tasks per node"
        )
        imp.refuse(where, f"{where} refused: {why}")
        return per_task
    per_task = per_gpu * gpus // tasks
    msg = f"{per_task} CPUs for each of the {tasks} task(s) on a node ({per_gpu} per GPU)"
    imp.note(where, "adjusted", f"{where} adjusted: {msg}")
    return per_task


def _positive_mb(value: str) -> int:
    mb = read_memory_mb(value)
    if mb < 1:
        raise ValueError("at least 1 MiB")
    return mb


def _memory(imp: Reading) -> dict[str, Any]:
    given = [name for name in ("mem", "mem-per-cpu", "mem-per-gpu") if name in imp.last]
    for name in given[1:]:
        why = "--mem, --mem-per-cpu and --mem-per-gpu are mutually exclusive"
        imp.refuse(imp.text(name), f"{imp.text(name)} refused: {why} (sbatch refuses too)")
    if len(given) != 1:
        return {}
    name = given[0]
    mb = imp.value(name, read_memory_mb if name == "mem" else _positive_mb)
    if mb is None:
        return {}
    if mb == 0:
        return {"whole_node_memory": True}
    field = {"mem": "memory_gb", "mem-per-cpu": "memory_per_cpu_gb"}.get(name, "memory_per_gpu_gb")
    return {field: mb / 1024}


def _times(imp: Reading) -> dict[str, Any]:
    if "time" not in imp.last:
        minutes = DEFAULT_TIME_LIMIT_S // 60
        msg = f"--time defaulted: none given; the platform's default of {minutes} minutes applies"
        imp.note("--time", "defaulted", msg)
    limit = imp.value("time", _finite_seconds) or DEFAULT_TIME_LIMIT_S
    times: dict[str, Any] = {"time_limit": limit}
    least = imp.value("time-min", _finite_seconds)
    if least is not None and least > limit:
        where = imp.text("time-min")
        imp.refuse(where, f"{where} refused: longer than the time limit ({limit} s)")
    elif least is not None:
        times["time_min"] = least
    return times


def _exclusive(imp: Reading) -> bool:
    d = imp.last.get("exclusive")
    if d is None:
        return False
    mode = (d.value or "exclusive").lower()
    if mode in ("user", "mcs"):
        imp.note(d.text, "adjusted", f"{d.text} adjusted: whole nodes, shared with no other job")
    elif mode == "oversubscribe":
        imp.note(d.text, "ignored", f"{d.text} ignored: sharing nodes is the site's default")
        return False
    elif mode != "exclusive":
        imp.refuse(d.text, f"{d.text} refused: expected exclusive, user, mcs or oversubscribe")
        return False
    return True


def _constraint(value: str) -> str:
    try:
        Resources(constraint=value)
    except ValidationError:
        raise ValueError(
            "node features joined by & | , with [] () * and counts, no spaces or quotes"
        ) from None
    return value


def resources(imp: Reading) -> dict[str, Any]:
    """The spec's ``resources`` from the directives ``imp`` has taken."""
    nodes, tasks = _layout(imp)
    gpus, model = _gpus(imp, nodes, tasks)
    tasks = _tasks_per_gpu(imp, gpus, tasks)
    optional = {
        "gpu_model": model,
        "tasks_per_node": tasks,
        "cpus_per_task": _cpus(imp, gpus, tasks),
        "constraint": imp.value("constraint", _constraint),
    }
    resources: dict[str, Any] = {"nodes": nodes, "gpus_per_node": gpus}
    resources |= {key: value for key, value in optional.items() if value is not None}
    resources |= _memory(imp)
    if _exclusive(imp):
        resources["exclusive"] = True
    return resources | _times(imp)
