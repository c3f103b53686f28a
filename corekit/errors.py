"""The one exception type for expected failures (bad input, missing files, bad config).

Library code raises :class:`ToolkitError` with a one-line message that names the file, the
line and the field where there is one; the CLIs turn it into ``Error: <message>`` and exit 1.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """An expected failure caused by the user's input; its message is shown as-is."""

    exit_code = 1


class ToolFailure(ToolkitError):
    """The tool itself could not do its work (an engine that would not start, a file it
    could not write), as opposed to bad input: evalkit exits 3 on it, so CI can tell "the
    gate could not run" from "the model regressed" (1) and "bad input" (2)."""

    exit_code = 3


def did_you_mean(word: str, choices: object, what: str) -> str:
    """The end of an "unknown X" message: ``; did you mean 'y'?`` for the closest choice,
    or `` (WHAT: a, b, c)`` listing them when none is close."""
    import difflib

    names = sorted(str(c) for c in choices)  # type: ignore[attr-defined]
    hint = difflib.get_close_matches(word, names, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f" ({what}: {', '.join(names)})"
