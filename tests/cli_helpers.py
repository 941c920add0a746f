"""Running the ``rarecast`` command in tests.

:func:`run_cli` runs ``rarecast ARGS`` in this process, through the same ``main()`` the console script calls,
and returns what a subprocess would have: the exit status, stdout and stderr. Starting a fresh interpreter
costs about two seconds of imports per call, and the suite makes a hundred such calls. Tests whose subject is
the process itself (signals, memory limits, the installed console script) start a real one with
:data:`CLI` or the script.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

from rarecast.cli import main

#: ``rarecast`` as a separate process
CLI = [sys.executable, "-c", "from rarecast.cli import main; main()"]


def run_cli(*args: object, cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """``rarecast ARGS`` in this process, from ``cwd``; returns ``(returncode, stdout, stderr)`` as a
    CompletedProcess. An exception that the command does not turn into an exit status propagates."""
    argv = ["rarecast", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    code: int | str | None = 0
    # A new interpreter's warning filters (pytest's own are set aside), which also lets a warning that an
    # earlier test triggered print again, as it would in a new process.
    with warnings.catch_warnings(), mock.patch.object(sys, "argv", argv):
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if cwd is not None:
                    os.chdir(cwd)
                main()
            except SystemExit as exc:
                code = exc.code
            finally:
                os.chdir(here)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(code, str):  # sys.exit("message") prints the message to stderr, as the interpreter would
        err.write(code + "\n")
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def run_process(*args: object, cwd: Path | str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``rarecast ARGS`` as a separate process (for tests about the process itself)."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
