"""Classify a failed Slurm command into the platform's errors.

Slurm clients report everything on stderr with rc 1, so the message decides. For reads an
unreachable controller or database is :class:`BackendUnavailable` (retry later), an unknown job
id is :class:`NotFound`, and anything else a command rejects is :class:`Invalid` carrying
Slurm's own words, because they are what an operator searches for.

A submission needs a finer answer, because getting it wrong either fails a job Slurm may be
running (uncharged) or submits it twice (see :class:`Submission`; docs/slurm.md has the table):

* **refused**: Slurm answered no for good (node configuration not available, invalid
  partition/account/QOS, limits the cluster never meets): :class:`Invalid`, the job fails and
  its budget is freed.
* **temporary**: Slurm answered "not now" and created nothing ("Resource temporarily
  unavailable", "Job violates accounting/QOS policy"): retried with backoff, the job waits.
* **ambiguous**: the request may have reached slurmctld (our time-out, ssh exit 255 after
  connecting, "Socket timed out on send/recv", "Zero Bytes were transmitted", killed by a
  signal, rc 0 without a job id): looked up by name, resubmitted only once it is certainly not
  there.
* **unreachable**: nothing reached slurmctld ("Unable to contact slurm controller (connect
  failure)", ssh could not connect or authenticate): the site is marked unavailable.
"""

from __future__ import annotations

import re
from enum import StrEnum

from aifactory.errors import AIFactoryError, BackendUnavailable, Invalid, NotFound

__all__ = [
    "SSH_UNREACHABLE",
    "Submission",
    "classify_submit",
    "command_error",
    "deferred",
    "is_deferred",
    "slurm_message",
    "submission_of",
    "submit_error",
]

# ssh exits 255 when it could not connect or authenticate, and also when the connection broke
# after the remote command started: only the messages tell the two apart.
SSH_UNREACHABLE = 255
# Exit statuses of a command that was killed: by `timeout` (124), by SIGKILL (137 = 128 + 9).
_KILLED = frozenset({124, 137})

_UNAVAILABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Problem talking to the database|Zero Bytes were transmitted|"
    r"Communication connection failure|Unable to establish controller machine|"
    r"Slurm backup controller in standby mode|slurmdbd: .*(?:not running|connection)",
    re.IGNORECASE,
)
# ssh's own words when it never got as far as running the remote command.
_SSH_NOT_CONNECTED = re.compile(
    r"ssh: connect to host|ssh: Could not resolve|Permission denied \(|"
    r"Host key verification failed|No route to host|kex_exchange_identification|"
    r"Connection timed out during banner exchange|Too many authentication failures|"
    r"Bad configuration option",
    re.IGNORECASE,
)
# slurmctld could not be reached at all: nothing was submitted.
_NOT_SENT = re.compile(
    r"Unable to contact slurm controller|Unable to establish controller machine|"
    r"Slurm backup controller in standby mode|Connection refused",
    re.IGNORECASE,
)
# The request may have reached slurmctld before the conversation broke.
_MAYBE_SENT = re.compile(
    r"Socket timed out|Zero Bytes were transmitted|Communication connection failure|"
    r"Connection reset|Broken pipe|closed by remote host|client_loop|packet_write_wait|"
    r"Timeout, server .* not responding",
    re.IGNORECASE,
)
# slurmctld answered "not now" and kept nothing.
_TEMPORARY = re.compile(
    r"Resource temporarily unavailable|temporarily unable to accept job|"
    r"violates accounting/QOS policy|Slurm is busy|try again later",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"Invalid job id specified|Job ID \S+ not found", re.IGNORECASE)
_PREFIXES = re.compile(
    r"^(?:\w+: error: )?(?:Batch job submission failed: |slurm_load_jobs error: )?",
)


class Submission(StrEnum):
    """What a failed submission means for the job (see the module's table)."""

    REFUSED = "refused"
    TEMPORARY = "temporary"
    AMBIGUOUS = "ambiguous"
    UNREACHABLE = "unreachable"


def slurm_message(stderr: str, stdout: str = "") -> str:
    """The most telling line of a command's error output, without the ``sbatch: error:`` noise."""
    lines = [ln.strip() for ln in (stderr or stdout).splitlines() if ln.strip()]
    if not lines:
        return "no output"
    # The last line is Slurm's verdict ("Batch job submission failed: ..."); earlier ones detail.
    return _PREFIXES.sub("", lines[-1]).strip() or lines[-1]


def _broken(returncode: int, text: str) -> bool:
    """The command did not end on its own: ssh lost its connection, or it was killed."""
    if returncode < 0 or returncode in _KILLED:
        return True
    return returncode == SSH_UNREACHABLE and not _SSH_NOT_CONNECTED.search(text)


def command_error(
    verb: str, returncode: int, stdout: str, stderr: str, *, job_id: str | None = None
) -> AIFactoryError:
    """The platform error for a failed Slurm command that only reads (or is safe to repeat).

    Args:
        verb: Command name for the message (``"squeue"``).
        returncode: Exit status of the command (255 means ssh failed).
        stdout: Its standard output.
        stderr: Its standard error.
        job_id: The job the command was about, for :class:`NotFound` details.

    Returns:
        The error to raise (the caller raises it, so tracebacks point at the call site).
    """
    text = f"{stderr}\n{stdout}"
    message = slurm_message(stderr, stdout)
    if returncode == SSH_UNREACHABLE or _broken(returncode, text) or _UNAVAILABLE.search(text):
        # For a read, a connection that broke half-way is as good as none: ask again later.
        return BackendUnavailable(
            f"{verb}: Slurm is unreachable: {message}", extra={"returncode": returncode}
        )
    if _NOT_FOUND.search(text):
        return NotFound(
            f"{verb}: unknown Slurm job {job_id or ''}".rstrip(), extra={"job_id": job_id}
        )
    return Invalid(f"{verb} rejected the request: {message}", extra={"returncode": returncode})


def classify_submit(returncode: int, stdout: str, stderr: str) -> Submission:
    """What a failed ``sbatch`` (or REST submit with the same words) means; see the table."""
    text = f"{stderr}\n{stdout}"
    if returncode == SSH_UNREACHABLE and _SSH_NOT_CONNECTED.search(text):
        return Submission.UNREACHABLE
    if _broken(returncode, text) or _MAYBE_SENT.search(text):
        return Submission.AMBIGUOUS
    if _NOT_SENT.search(text):
        return Submission.UNREACHABLE
    if _TEMPORARY.search(text):
        return Submission.TEMPORARY
    return Submission.REFUSED


def submit_error(verb: str, returncode: int, stdout: str, stderr: str) -> AIFactoryError:
    """The platform error for a failed submission: :class:`Invalid` only when Slurm refused.

    Every other outcome is a :class:`BackendUnavailable` whose ``extra["submission"]`` names
    it, so the executor knows whether to look the job up, back off or wait for the site.
    """
    kind = classify_submit(returncode, stdout, stderr)
    message = slurm_message(stderr, stdout)
    if kind is Submission.REFUSED:
        return Invalid(f"{verb} rejected the request: {message}", extra={"returncode": returncode})
    words = {
        Submission.TEMPORARY: "Slurm cannot take it now",
        Submission.AMBIGUOUS: "the outcome is unknown",
        Submission.UNREACHABLE: "Slurm is unreachable",
    }[kind]
    return BackendUnavailable(
        f"{verb}: {words}: {message}", extra={"returncode": returncode, "submission": kind.value}
    )


def submission_of(exc: BaseException) -> Submission:
    """How a failed submission call must be treated.

    Only an :class:`Invalid` is a refusal. A :class:`BackendUnavailable` says what it is in
    ``extra["submission"]``; one that does not (a transport time-out, a dropped HTTP
    connection) and any other error may have reached Slurm, so they are ambiguous.
    """
    if isinstance(exc, Invalid):
        return Submission.REFUSED
    if isinstance(exc, AIFactoryError):
        try:
            return Submission(exc.extra.get("submission", Submission.AMBIGUOUS))
        except ValueError:
            return Submission.AMBIGUOUS
    return Submission.AMBIGUOUS


def deferred(message: str, retry_after_s: float) -> BackendUnavailable:
    """A per-job "not now": this attempt stays placed and is tried again after a while; the
    site itself answers (so it is not marked unavailable)."""
    return BackendUnavailable(
        message, extra={"scope": "job", "retry_after_s": round(max(0.0, retry_after_s), 3)}
    )


def is_deferred(exc: BaseException) -> bool:
    """Whether ``exc`` is a per-job :func:`deferred`, not an outage of the whole site."""
    return isinstance(exc, BackendUnavailable) and exc.extra.get("scope") == "job"
