"""The one exception type for expected failures (bad input, missing files, bad config).

Library code raises :class:`DatakitError` with a one-line message that names the file, the
line and the field where there is one; the CLIs turn it into ``Error: <message>`` and exit 1.
"""

from __future__ import annotations


class DatakitError(Exception):
    """An expected failure caused by the user's input; its message is shown as-is."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix ``file:line: field:`` from the parts that are known."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field:
        out += f": {field}"
    return out
