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


class RunFailed(RarecastError):
    """A scoring run finished, but more of its queries failed than it allows (by default: every one of them).

    What was scored is stored and the failures table says why each failure happened; ``failed`` and ``total``
    count the run's queries. The CLI prints the message as one line and exits with status 1, not the 2 of bad
    input: the inputs were fine, the run was not.
    """

    def __init__(self, problem: str, *, failed: int, total: int):
        self.problem = problem
        self.failed = failed
        self.total = total
        super().__init__(problem)


class RarecastWarning(UserWarning):
    """A fit ran but its data are thin or its assumptions doubtful; the message says what to do."""
