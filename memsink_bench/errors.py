"""User-facing errors: one line naming the problem and the fix; the CLI exits with code 2."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user (flag, YAML, checkpoint, plugin, corpus).

    The message names the problem and how to fix it, on one line.
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        message = problem if fix is None else f"{problem}; {fix}"
        super().__init__(" ".join(message.split()))


def did_you_mean(name: str, choices) -> str:
    """A 'did you mean' suffix for an unknown name, or a list of the valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"did you mean '{close[0]}'? (choices: {', '.join(choices)})"
    return f"choose one of: {', '.join(choices)}"
