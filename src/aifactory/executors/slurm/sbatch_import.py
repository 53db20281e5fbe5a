"""Import an existing batch script: its ``#SBATCH`` directives become a platform job spec.

Users bring the scripts they have (``aif submit train.sbatch``). The directives are read
exactly as sbatch 22.05 reads them (:mod:`.sbatch_options`); the script itself, interpreter
line included, becomes the job's ``script`` and runs once as the batch step, as under sbatch.

Nothing is dropped silently: every directive is honoured, or it comes back as a :class:`Note`
saying what happened to it — ``replaced`` (the platform owns account, partition and log
paths), ``ignored`` (it changes nothing the job relies on), ``adjusted`` (honoured in the
platform's terms, e.g. a node range becomes its minimum), ``defaulted`` (no ``--time``) or
``refused``. One refused directive fails the import; :class:`~aifactory.errors.Invalid` then
lists every refused directive, and ``extra["notes"]`` all the notes.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, NamedTuple

from pydantic import ValidationError

from aifactory.domain.jobspec import Resources, array_tasks
from aifactory.errors import Invalid
from aifactory.executors.slurm.sbatch_options import read_directives
from aifactory.executors.slurm.sbatch_resources import (
    DEFAULT_TIME_LIMIT_S,
    Note,
    Reading,
    resources,
)
from aifactory.executors.slurm.sbatch_values import parse_memory_gb, parse_time_limit

__all__ = [
    "DEFAULT_TIME_LIMIT_S",
    "Note",
    "SbatchImport",
    "import_sbatch",
    "parse_memory_gb",
    "parse_time_limit",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class SbatchImport(NamedTuple):
    """A job spec in the :class:`~aifactory.domain.jobspec.JobSpec` shape, and the notes."""

    spec: dict[str, Any]
    notes: list[Note]


def _check_script(text: str) -> None:
    """What sbatch checks before reading directives (sbatch.c ``_get_script_buffer``)."""
    problems = [
        (not text.strip(), "the batch script is empty"),
        (not text.startswith("#!"), "the first line must start with #! and an interpreter"),
        ("\0" in text, "the batch script contains a NUL character"),
        ("\r\n" in text, "the batch script has DOS line breaks (\\r\\n)"),
    ]
    for broken, message in problems:
        if broken:
            raise Invalid.field("script", "sbatch", message)


def _name(imp: Reading, default: str) -> str:
    d = imp.last.get("job-name")
    raw = (d.value or "") if d else default
    if _NAME.match(raw):
        return raw
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:64] or "job"
    if d is not None:
        imp.note(d.text, "adjusted", f"{d.text} adjusted: the job is named {clean!r}")
    return clean


def _workdir(imp: Reading, value: str) -> str:
    if value.startswith("/"):
        raise ValueError("the platform owns the job directory; give a path relative to it")
    path = posixpath.normpath(value)
    if path == ".." or path.startswith("../"):
        raise ValueError("a path inside the job directory, without '..'")
    where = imp.text("chdir")
    msg = "relative to the job directory (sbatch: to where it was run)"
    imp.note(where, "adjusted", f"{where} adjusted: {msg}")
    return path


def _array(value: str) -> str:
    array_tasks(value)  # raises ValueError with the rule broken
    return value.strip()


def _extras(imp: Reading) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    array = imp.value("array", _array)
    if array is not None:
        extras["array"] = array
    workdir = imp.value("chdir", lambda v: _workdir(imp, v))
    if workdir is not None and workdir != ".":
        extras["workdir"] = workdir
    return extras


def _check_resources(imp: Reading, spec_resources: dict[str, Any]) -> None:
    """What the spec itself would refuse (e.g. more than 4096 nodes), named here first."""
    if any(n.action == "refused" for n in imp.notes):
        return
    try:
        Resources.model_validate(spec_resources)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "resources"
            imp.refuse(f"resources.{where}", f"resources.{where}: {error['msg']}")


def import_sbatch(text: str, default_name: str = "job") -> SbatchImport:
    """Turn a batch script into a job spec, as sbatch would read it.

    Args:
        text: The batch script, interpreter line included.
        default_name: The job's name without ``--job-name`` (sbatch uses the file's name).

    Returns:
        ``(spec, notes)``: ``spec`` has ``name``, ``script`` (all of ``text``), ``resources``
        (the :class:`~aifactory.domain.jobspec.Resources` fields) and, when given, ``array``
        and ``workdir``; ``notes`` lists each directive replaced, ignored, adjusted or
        defaulted.

    Raises:
        Invalid: sbatch itself would refuse the script, or a directive asks for something the
            platform cannot do; one detail per refused directive (``sbatch.--mail-user`` ...).
    """
    _check_script(text)
    directives, slurm_lines, errors = read_directives(text)
    imp = Reading()
    for line in slurm_lines:
        msg = f"#SLURM adjusted: line {line} is read as #SBATCH (sbatch warns: change it)"
        imp.note("#SLURM", "adjusted", msg)
    for error in errors:
        imp.refuse(error.word, f"{error.word} refused: line {error.line}: {error.message}")
    for directive in directives:
        imp.take(directive)
    spec_resources = resources(imp)
    spec: dict[str, Any] = {"name": _name(imp, default_name), "script": text}
    spec |= {"resources": spec_resources} | _extras(imp)
    _check_resources(imp, spec_resources)
    if any(n.action == "refused" for n in imp.notes):
        raise imp.invalid()
    return SbatchImport(spec, imp.notes)
