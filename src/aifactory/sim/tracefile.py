"""Opening trace files: plain or gzip text, with clear errors for missing or damaged files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from aifactory.errors import Invalid

__all__ = ["read_text", "trace_error"]

_GZIP_MAGIC = b"\x1f\x8b"


def trace_error(path: Path | str, message: str, line: int | None = None) -> Invalid:
    """An ``Invalid`` whose message starts with ``FILE:LINE:`` like a compiler's."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return Invalid(f"{where}: {message}", extra={"file": str(path), "line": line})


def read_text(path: Path | str) -> str:
    """Whole text of a trace file, gunzipped when it starts with the gzip magic bytes.

    Raises:
        Invalid: The file is missing or unreadable, or its gzip stream is truncated or corrupt.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise trace_error(p, f"cannot read trace: {exc.strerror or exc}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise trace_error(p, "gzip stream is truncated (file ended early)") from None
        except (OSError, zlib.error) as exc:
            raise trace_error(p, f"gzip stream is corrupt: {exc}") from None
    # latin-1 never fails: header comments in old traces are not always UTF-8.
    return raw.decode("latin-1")
