"""The one exception type for expected failures (bad input, missing files, bad config).

Library code raises :class:`DatakitError` with a one-line message that names the file, the
line and the field where there is one; the CLIs turn it into ``Error: <message>`` and exit 1.
"""

from __future__ import annotations


class DatakitError(Exception):
    """An expected failure caused by the user's input; its message is shown as-is."""
