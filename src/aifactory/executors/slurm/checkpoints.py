"""The Slurm executor's checkpoint access (``executors/checkpoints.py``) through its transport.

Every command runs as the person the attempt runs as (``Transport.as_user``), so the control
plane reads and writes exactly what the job itself could: ``find -printf`` lists the complete
files, ``base64`` carries their bytes over the transport's text channel (local or SSH), and a
staged file is decoded to a temporary name and renamed by a fixed ``sh -c`` script whose paths
are its positional arguments, never part of the script text. Sites reached only through
slurmrestd without an admin transport have no file access: their executor lacks the capability.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

from aifactory.errors import Invalid, NotFound
from aifactory.executors import _jobfs
from aifactory.executors.base import ExecJob
from aifactory.executors.checkpoints import MAX_FILES, CheckpointFiles, complete
from aifactory.executors.slurm.backends import SlurmBackend
from aifactory.executors.slurm.script import ScriptOptions, render_script
from aifactory.executors.slurm.transport import Transport, check_login

# Decode stdin to "$1", then rename it over "$2": the paths never enter the script's text.
_STAGE_SCRIPT = 'base64 -d > "$1" && mv -f -- "$1" "$2"'


class SlurmCheckpoints:
    """Mixed into :class:`SlurmExecutor`: the ``checkpoints`` capability over the transport."""

    backend: SlurmBackend

    def script_options(self, project: str | None, partition: str | None) -> ScriptOptions:
        raise NotImplementedError  # SlurmExecutor's

    def _files_transport(self, spec: ExecJob) -> Transport:
        transport = self.backend.admin
        if transport is None:
            raise Invalid.field("executor", "checkpoints", "this site gives no file access")
        return transport.as_user(check_login(spec.run_as)) if spec.run_as else transport

    def _checkpoint_dir(self, spec: ExecJob, checkpoint_dir: str) -> str:
        if PurePosixPath(checkpoint_dir).is_absolute():
            return checkpoint_dir
        workdir = render_script(spec, self.script_options(spec.project, spec.partition)).workdir
        return str(PurePosixPath(workdir) / checkpoint_dir)

    def checkpoint_files(self, spec: ExecJob, checkpoint_dir: str) -> CheckpointFiles:
        """``find DIR -type f -links 1`` (links are not followed): complete files only."""
        directory = self._checkpoint_dir(spec, checkpoint_dir)
        argv = ["find", directory, "-mindepth", "1", "-type", "f", "-links", "1"]
        result = self._files_transport(spec).run([*argv, "-printf", r"%P\t%s\t%T@\n"])
        if result.returncode != 0 and "No such file" in result.stderr:
            return {}
        if result.returncode != 0:
            raise NotFound(f"cannot list {directory}: {result.stderr.strip()[:300]}")
        found: CheckpointFiles = {}
        for line in result.stdout.splitlines():
            name, _, rest = line.partition("\t")
            size, _, mtime = rest.partition("\t")
            if complete(name) and len(found) < MAX_FILES:
                try:
                    found[name] = (int(size), int(Decimal(mtime) * 1_000_000_000))
                except (ValueError, InvalidOperation):
                    continue
        return found

    def read_checkpoint_file(self, spec: ExecJob, checkpoint_dir: str, name: str) -> bytes:
        """``base64 FILE`` as the person, decoded here."""
        path = str(PurePosixPath(self._checkpoint_dir(spec, checkpoint_dir), *_jobfs.parts(name)))
        result = self._files_transport(spec).run(["base64", "-w", "0", path])
        if result.returncode != 0:
            raise NotFound(f"checkpoint file {name} is gone: {result.stderr.strip()[:300]}")
        try:
            return base64.b64decode(result.stdout.strip(), validate=True)
        except binascii.Error as exc:
            raise NotFound(f"checkpoint file {name} could not be read whole: {exc}") from None

    def stage_checkpoint(
        self, spec: ExecJob, checkpoint_dir: str, files: Mapping[str, Path]
    ) -> None:
        """``mkdir -p`` the directories, then each file decoded to a temporary name and
        renamed, all as the person (owner-only: the person's umask)."""
        directory = PurePosixPath(self._checkpoint_dir(spec, checkpoint_dir))
        transport = self._files_transport(spec)
        targets = {name: directory.joinpath(*_jobfs.parts(name)) for name in files}
        folders = sorted({str(t.parent) for t in targets.values()} | {str(directory)})
        made = transport.run(["mkdir", "-p", "-m", "0700", "--", *folders])
        if made.returncode != 0:
            raise Invalid(f"cannot create {directory} at the site: {made.stderr.strip()[:300]}")
        for name, target in sorted(targets.items()):
            text = base64.b64encode(files[name].read_bytes()).decode()
            tmp = str(target.parent / f".{target.name}.aif-stage.tmp")
            argv = ["sh", "-c", _STAGE_SCRIPT, "sh", tmp, str(target)]
            done = transport.run(argv, stdin=text)
            if done.returncode != 0:
                raise Invalid(f"cannot stage {name} at the site: {done.stderr.strip()[:300]}")
