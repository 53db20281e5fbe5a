"""Classify a failed Slurm command into the platform's errors.

Slurm clients report everything on stderr with rc 1, so the message decides: an unreachable
controller or database is :class:`BackendUnavailable` (retry later), an unknown job id is
:class:`NotFound`, and anything else a command rejects is :class:`Invalid` carrying Slurm's own
words, because they are what an operator searches for.
"""

from __future__ import annotations

import re

from aifactory.errors import AIFactoryError, BackendUnavailable, Invalid, NotFound

__all__ = ["SSH_UNREACHABLE", "command_error", "slurm_message"]

# ssh exits 255 when it could not connect or authenticate; the remote command never ran.
SSH_UNREACHABLE = 255

_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Problem talking to the database|Zero Bytes were transmitted|"
    r"Communication connection failure|Unable to establish controller machine|"
    r"Slurm backup controller in standby mode|slurmdbd: .*(?:not running|connection)",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"Invalid job id specified|Job ID \S+ not found", re.IGNORECASE)
_PREFIXES = re.compile(
    r"^(?:\w+: error: )?(?:Batch job submission failed: |slurm_load_jobs error: )?",
)


def slurm_message(stderr: str, stdout: str = "") -> str:
    """The most telling line of a command's error output, without the ``sbatch: error:`` noise."""
    lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
    if not lines:
        return "no output"
    # The last line is Slurm's verdict ("Batch job submission failed: ..."); earlier ones detail.
    return _PREFIXES.sub("", lines[-1]).strip() or lines[-1]


def command_error(
    verb: str, returncode: int, stdout: str, stderr: str, *, job_id: str | None = None
) -> AIFactoryError:
    """The platform error for a failed Slurm command.

    Args:
        verb: Command name for the message (``"sbatch"``).
        returncode: Exit status of the command (255 means ssh could not connect).
        stdout: Its standard output.
        stderr: Its standard error.
        job_id: The job the command was about, for :class:`NotFound` details.

    Returns:
        The error to raise (the caller raises it, so tracebacks point at the call site).
    """
    text = f"{stderr}\n{stdout}"
    message = slurm_message(stderr, stdout)
    if (returncode == SSH_UNREACHABLE and "ssh:" in text) or _UNAVAILABLE.search(text):
        return BackendUnavailable(
            f"{verb}: Slurm is unreachable: {message}", extra={"returncode": returncode}
        )
    if _NOT_FOUND.search(text):
        return NotFound(
            f"{verb}: unknown Slurm job {job_id or ''}".rstrip(), extra={"job_id": job_id}
        )
    return Invalid(f"{verb} rejected the request: {message}", extra={"returncode": returncode})
