"""Exceptions raised by rarecast. Both subclass ValueError so callers can catch either broadly."""

from __future__ import annotations


class RarecastError(ValueError):
    """Base class of every error rarecast raises on purpose."""


class ForecastError(RarecastError):
    """The data cannot support the requested fit or forecast; the message says what to do.

    ``index`` is the 0-based position of the offending score when one score is to blame, so a file reader can
    name its row.
    """

    def __init__(self, problem: str, *, index: int | None = None):
        self.problem = problem
        self.index = index
        super().__init__(problem if index is None else f"query {index + 1}: {problem}")


class InputError(RarecastError):
    """A file or value given by the user is malformed.

    The message names the file and, where there is one, the 1-based row, so the CLI can print it on one line.
    """

    def __init__(self, problem: str, *, file: str | None = None, row: int | None = None):
        self.problem = problem
        self.file = file
        self.row = row
        where = ""
        if file is not None:
            where = f"{file}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(f"{where}{problem}")


class RarecastWarning(UserWarning):
    """A fit ran but its data are thin or its assumptions doubtful; the message says what to do."""
