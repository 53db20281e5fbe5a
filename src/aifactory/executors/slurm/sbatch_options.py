"""sbatch's own directive reader, ported: which lines are directives, how they split, getopt.

Followed from Slurm 22.05 (``src/sbatch/opt.c``: ``_opt_batch_script``, ``get_argument``;
``src/common/slurm_opt.c``: the option table, with ``+`` so getopt stops at a non-option):

* A directive line starts in column 0 with ``#SBATCH`` (``#SLURM`` too, which sbatch reads with
  a warning). Scanning stops at the first line holding anything but blanks or a comment; an
  indented ``#SBATCH`` is a comment.
* A line splits into words at whitespace; ``"`` and ``'`` group (alike: a backslash escapes the
  next character inside either), and an unquoted ``#`` ends the line, even inside a word.
* The words of every directive line form one argument vector read by ``getopt_long``: short
  options (``-N2``, ``-N 2``, clustered ``-vN2``), long options with ``=`` or the next word, and
  a long option may be shortened to any unambiguous prefix. The first word that is not an option
  makes sbatch refuse the script ("Invalid directive found in batch script").
"""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.executors.slurm.sbatch_table import NO, OPTIONAL, OPTIONS, SHORT, Option

__all__ = ["Directive", "DirectiveError", "read_directives", "split_directive"]


@dataclass(frozen=True)
class Directive:
    """One option as getopt returned it, under its canonical long name."""

    name: str
    value: str | None
    line: int

    @property
    def text(self) -> str:
        """``--name=value`` (or ``--name``), in long form whichever form the script used."""
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


class DirectiveError(Exception):
    """sbatch would refuse the script here; ``word`` names the offending text."""

    def __init__(self, word: str, message: str, line: int) -> None:
        super().__init__(message)
        self.word, self.message, self.line = word, message, line


def _next_word(text: str, start: int, line: int) -> tuple[str | None, int]:
    """``get_argument``: the next word from ``start`` and where it ended; ``None`` at the end
    of the line (also at an unquoted ``#``, and at an empty word such as ``""``)."""
    i = start
    while i < len(text) and text[i].isspace():
        i += 1
    if text[i : i + 1] == ":":
        raise DirectiveError(text.strip(), "sbatch: unexpected ':' at the start of a word", line)
    word: list[str] = []
    quote, escape = "", False
    while i < len(text) and (quote or not text[i].isspace()):
        ch = text[i]
        if not (quote or escape) and ch == "#":  # an unquoted '#' ends the line, even mid-word
            break
        i += 1
        if escape:
            escape = False
        elif ch == "\\":
            escape = True
            continue
        elif ch == quote:
            quote = ""
            continue
        elif not quote and ch in "\"'":
            quote = ch
            continue
        word.append(ch)
    if quote:
        raise DirectiveError(text.strip(), f"sbatch: unmatched {quote} in the line", line)
    return ("".join(word) if word else None), i


def split_directive(text: str, line: int = 0) -> list[str]:
    """The words sbatch reads from what follows ``#SBATCH`` on one line."""
    words: list[str] = []
    word, pos = _next_word(text, 0, line)
    while word is not None:
        words.append(word)
        word, pos = _next_word(text, pos, line)
    return words


def _directive_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text after the magic word) up to the first command line."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        for magic in ("#SBATCH", "#SLURM"):
            if line.startswith(magic):
                found.append((number, line[len(magic) :]))
                break
        else:
            stripped = line.lstrip()
            if stripped and not stripped.startswith("#"):
                break
    return found


def _het_separator(rest: str, line: int) -> None:
    first = rest.split(None, 1)[0].lower() if rest.split() else ""
    if first in ("hetjob", "packjob"):
        raise DirectiveError(first, "heterogeneous jobs are not supported", line)


def _long(words: list[tuple[str, int]], i: int) -> tuple[Directive, int]:
    word, line = words[i]
    name, eq, value = word[2:].partition("=")
    option = OPTIONS.get(name) or _abbreviation(name, word, line)
    canonical = option.alias_of or option.name
    if option.has_arg == NO:
        if eq:
            raise DirectiveError(word, f"sbatch: option '--{option.name}' takes no value", line)
        return Directive(canonical, None, line), i + 1
    if eq or option.has_arg == OPTIONAL:
        return Directive(canonical, value if eq else None, line), i + 1
    if i + 1 >= len(words):
        raise DirectiveError(word, f"sbatch: option '--{option.name}' needs a value", line)
    return Directive(canonical, words[i + 1][0], line), i + 2


def _abbreviation(name: str, word: str, line: int) -> Option:
    """getopt_long: an unambiguous prefix names its option (aliases count as one)."""
    matches = [o for o in OPTIONS.values() if o.name.startswith(name)]
    distinct = {o.alias_of or o.name for o in matches}
    if not name or not matches:
        raise DirectiveError(word, f"sbatch: unrecognized option '{word}'", line)
    if len(distinct) > 1:
        names = ", ".join(f"--{o.name}" for o in matches)
        raise DirectiveError(word, f"sbatch: option '--{name}' is ambiguous ({names})", line)
    return matches[0]


def _short(words: list[tuple[str, int]], i: int) -> tuple[list[Directive], int]:
    word, line = words[i]
    found: list[Directive] = []
    for pos in range(1, len(word)):
        option = SHORT.get(word[pos])
        if option is None:
            raise DirectiveError(word, f"sbatch: invalid option -- '{word[pos]}'", line)
        rest = word[pos + 1 :]
        if option.has_arg == NO:
            found.append(Directive(option.name, None, line))
            continue
        if rest or option.has_arg == OPTIONAL:
            found.append(Directive(option.name, rest or None, line))
            return found, i + 1
        if i + 1 >= len(words):
            raise DirectiveError(word, f"sbatch: option '-{word[pos]}' needs a value", line)
        found.append(Directive(option.name, words[i + 1][0], line))
        return found, i + 2
    return found, i + 1


def _step(words: list[tuple[str, int]], i: int) -> tuple[list[Directive], int]:
    word, line = words[i]
    if not word.startswith("-") or word == "-":
        raise DirectiveError(word, f"sbatch: invalid directive {word!r} (not an option)", line)
    if word.startswith("--"):
        directive, i = _long(words, i)
        return [directive], i
    return _short(words, i)


def _skipped(words: list[tuple[str, int]], i: int) -> int:
    """Words to pass over after an error: a bad option's apparent value goes with it."""
    word = words[i][0]
    takes_next = word.startswith("-") and "=" not in word and len(word) > 1
    follows = i + 1 < len(words) and not words[i + 1][0].startswith("-")
    return 2 if takes_next and follows else 1


def _getopt(words: list[tuple[str, int]]) -> tuple[list[Directive], list[DirectiveError]]:
    """Every option, and every place sbatch would stop with an error (reading on after one, so
    that all of them are reported at once)."""
    found: list[Directive] = []
    errors: list[DirectiveError] = []
    i = 0
    while i < len(words):
        if words[i][0] == "--":  # getopt's end of options: any word after it is an error
            errors.extend(
                DirectiveError(w, f"sbatch: invalid directive {w!r} (after --)", n)
                for w, n in words[i + 1 :]
            )
            break
        try:
            directives, i = _step(words, i)
        except DirectiveError as exc:
            errors.append(exc)
            i += _skipped(words, i)
            continue
        found.extend(directives)
    return found, errors


def read_directives(
    text: str,
) -> tuple[list[Directive], list[int], list[DirectiveError]]:
    """The directives sbatch would read from a batch script, in order.

    Returns:
        ``(directives, slurm_lines, errors)``: every option under its canonical long name; the
        numbers of lines that used the deprecated ``#SLURM``; and every place where sbatch
        itself would refuse the script (bad quoting, an unknown or ambiguous option, a missing
        value, a word that is not an option, a hetjob separator).
    """
    words: list[tuple[str, int]] = []
    slurm_lines: list[int] = []
    errors: list[DirectiveError] = []
    lines = text.split("\n")
    for number, rest in _directive_lines(text):
        if lines[number - 1].startswith("#SLURM"):
            slurm_lines.append(number)
        try:
            _het_separator(rest, number)
            words.extend((w, number) for w in split_directive(rest, number))
        except DirectiveError as exc:
            errors.append(exc)
    found, getopt_errors = _getopt(words)
    return found, slurm_lines, errors + getopt_errors
