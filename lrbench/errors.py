"""The two kinds of failure the CLI tells apart (docs/design.md, "Errors and exit codes"), and the
one "did you mean" every message that names an unknown word uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: a config, an argument, missing data. The CLI prints one line and exits 2."""

    exit_code = 2


class RunFailed(Exception):
    """A run or the sweep failed at run time. The CLI prints the message and exits 1."""

    exit_code = 1


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_line(err: BaseException) -> str:
    """An exception (say, one the user's code raised) as `Type: message` on one line."""
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
