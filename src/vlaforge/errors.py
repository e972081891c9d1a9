"""One exception type for user-facing problems.

Anything a user can cause (a missing dataset, an unknown task, a bad config key) raises
`VlaforgeError` with a one-line message that names the problem; the CLI prints it as
`vlaforge: error: <message>` and exits with status 2. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VlaforgeError(Exception):
    """A problem with the user's input, reported in one line without a traceback."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> VlaforgeError:
    """`unknown preset 'octo-smal' (did you mean 'octo-small'?)`."""
    choices = sorted(choices)
    return VlaforgeError(
        f"unknown {kind} {name!r}{did_you_mean(name, choices)}; choose from: {', '.join(choices)}"
    )
