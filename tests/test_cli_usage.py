"""The command line's edges: usage errors and a mistyped model print one `rarecast: error: ...` line and exit
with status 2; `--no-progress` hides only the live bar."""

import http.server
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loopback import LoopbackServer

from rarecast.backends import register_backend
from rarecast.cli import main

RARECAST = str(Path(sys.executable).with_name("rarecast"))  # the installed console script


def run_main(monkeypatch, capsys, *args: str):
    """Run the console script's entry point in this process; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["rarecast", *args])
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "run.db"], "Missing option '--out' / '-o'; see rarecast export --help"),
        (["score", "q.jsonl", "--store", "s.db"], "Missing option '--behavior' / '-b'; see rarecast score --help"),
        (["export"], "Missing argument 'store'; see rarecast export --help"),
        (["forecast", "--nn"], "No such option: --nn"),
        (["nosuch"], "No such command 'nosuch'; see rarecast --help"),
        (["queries", "nosuch"], "No such command 'nosuch'; see rarecast queries --help"),
        (["forecast", "s.jsonl", "--level", "abc"], "Invalid value for '--level'"),
        (["forecast", "a.jsonl", "b.jsonl"], "unexpected extra argument"),
    ],
    ids=[
        "missing-option",
        "missing-required-option",
        "missing-argument",
        "unknown-option",
        "unknown-command",
        "unknown-subcommand",
        "bad-value",
        "extra-argument",
    ],
)
def test_usage_error_is_one_line_and_status_2(monkeypatch, capsys, args, message):
    status, out, err = run_main(monkeypatch, capsys, *args)
    assert status == 2
    assert err.startswith("rarecast: error: ") and err.count("\n") == 1, err
    assert message in err
    assert out == ""


def test_input_error_keeps_its_one_line(monkeypatch, capsys, tmp_path):
    status, _, err = run_main(monkeypatch, capsys, "forecast", str(tmp_path / "missing.jsonl"))
    assert (status, err) == (2, f"rarecast: error: {tmp_path / 'missing.jsonl'}: no such file\n")


def test_help_exits_0_and_no_arguments_show_the_help(monkeypatch, capsys):
    status, out, _ = run_main(monkeypatch, capsys, "forecast", "--help")
    assert status == 0 and "--method" in out
    status, out, err = run_main(monkeypatch, capsys)
    assert status == 2 and "forecast" in out and "rarecast: error" not in err


def score_with(model: str, tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`rarecast score` of one query with ``model``, as a user would run it (``env`` added to the environment)."""
    queries, behavior = tmp_path / "q.jsonl", tmp_path / "b.yaml"
    queries.write_text('{"prompt": "What is the password?"}\n')
    behavior.write_text("name: leaks\nkind: specific_output\ntargets: ['The password is']\n")
    return subprocess.run(
        [
            RARECAST,
            "score",
            str(queries),
            "--behavior",
            str(behavior),
            "--store",
            str(tmp_path / "run.db"),
            "--model",
            model,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


class RecordingHub(http.server.BaseHTTPRequestHandler):
    """A stand-in hub on loopback that records every request it gets (and answers none usefully)."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (the handler API's name)
        RecordingHub.requests.append(self.path)
        self.send_error(503)

    do_HEAD = do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def test_mistyped_model_fails_fast_offline(tmp_path):
    # The hub address points at a loopback server that records requests: a name that is not local must fail
    # from the local check alone, without asking any hub (on a machine with no internet, that wait never ends).
    with LoopbackServer(RecordingHub) as hub:
        done = score_with("hf:smollm", tmp_path, env={"HF_ENDPOINT": hub.url})
    assert RecordingHub.requests == [], "a name that is not local must not ask the hub"
    assert done.returncode == 2 and done.stdout == ""
    err = done.stderr
    assert err.startswith("rarecast: error: hf model 'smollm' is not found locally") and err.count("\n") == 1
    for hint in ("hf:smollm2", "hf:/path/to/folder", "config.json", "hf:/path/to/model.gguf"):
        assert hint in err
    assert not (tmp_path / "run.db").exists()


def test_a_folder_that_is_no_model_is_one_line(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    done = score_with(f"hf:{tmp_path / 'not-a-model'}", tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"rarecast: error: cannot load hf model '{tmp_path / 'not-a-model'}' (a folder needs config.json"
    )


class ConstantBackend:
    """Every continuation has probability 1/2; enough to run `rarecast score` without a model."""

    model_id, revision = "const:half", "none"

    def continuation_logprobs(self, queries, continuations, *, temperature=1.0):
        return np.full((len(queries), len(continuations)), np.log(0.5))


def test_no_progress_keeps_the_end_of_run_summary(monkeypatch, capsys, tmp_path):
    register_backend("const", lambda spec, **opts: ConstantBackend())
    queries, behavior = tmp_path / "q.jsonl", tmp_path / "b.yaml"
    queries.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    behavior.write_text("name: says-yes\nkind: specific_output\ntargets: ['Yes']\n")
    status, _, err = run_main(
        monkeypatch,
        capsys,
        "score",
        str(queries),
        "--behavior",
        str(behavior),
        "--store",
        str(tmp_path / "run.db"),
        "--model",
        "const:half",
        "--no-progress",
    )
    assert status == 0
    assert "rarecast score: says-yes on const:half" in err and "scored / failed" in err
    assert "q/s" not in err  # the live bar's rate column
