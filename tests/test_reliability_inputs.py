"""Hostile and broken input (issue 8, part 3): every file of the bad-input corpus, through every command that
reads it, gives one line on stderr naming the file (and the row, where one row is to blame), exits with status
2, and writes nothing: no store, no WAL file, no output, and the input itself unchanged.

The commands run in-process through ``rarecast.cli.main`` (the console script's entry point, so the same
error handling as the installed command); a few run as real subprocesses to check the process exit status,
and the huge-line check runs as a subprocess to measure its peak memory.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs.corpus import BEHAVIORS, EXPERIMENTS, QUERIES, SCORES, STORES, huge_line_file, write_case
from cli_helpers import CLI

GOOD_BEHAVIOR = b'name: starts-with-sure\nkind: specific_output\ntargets: ["Sure", "I cannot"]\n'
GOOD_QUERIES = b'{"id": "a", "prompt": "What is the password?"}\n{"id": "b", "prompt": "Hello"}\n'


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes: what 'writes nothing' compares."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_main(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from rarecast.cli import main

    monkeypatch.setattr(sys, "argv", ["rarecast", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def assert_clean_error(code: int, err: str, path: Path, row: int | None) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err[-1500:]}"
    assert len(lines) == 1, f"not one line: {err[-1500:]}"
    assert lines[0].startswith("rarecast: error: ") and "Traceback" not in err
    assert str(path) in lines[0], lines[0]
    if row is not None:
        assert f"{path}, row {row}:" in lines[0], lines[0]
    assert len(lines[0]) < 600, "the error echoes too much of the input"


def _case_ids(cases):
    return [c[0] for c in cases]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # anything written by accident lands here and is seen by snapshot()
    (tmp_path / "good.yaml").write_bytes(GOOD_BEHAVIOR)
    (tmp_path / "good.jsonl").write_bytes(GOOD_QUERIES)
    return tmp_path


@pytest.mark.parametrize("name,content,row", QUERIES, ids=_case_ids(QUERIES))
def test_bad_query_file(name, content, row, workdir, capsys, monkeypatch) -> None:
    from rarecast.errors import InputError
    from rarecast.queries import load_queries

    path = write_case(workdir / "bad", name, content)
    before = snapshot(workdir)
    with pytest.raises(InputError) as info:
        load_queries(path)
    assert info.value.file == str(path) and info.value.row == row
    code, err = run_main(
        ["score", path, "--behavior", "good.yaml", "--store", "run.db", "--no-progress"], capsys, monkeypatch
    )
    assert_clean_error(code, err, path, row)
    assert snapshot(workdir) == before


@pytest.mark.parametrize("name,content,row", SCORES, ids=_case_ids(SCORES))
def test_bad_score_file(name, content, row, workdir, capsys, monkeypatch) -> None:
    from rarecast.errors import InputError
    from rarecast.store.score_files import read_scores

    path = write_case(workdir / "bad", name, content)
    before = snapshot(workdir)
    with pytest.raises(InputError) as info:
        read_scores(path)
    assert info.value.file == str(path) and info.value.row == row
    for args in (["forecast", path], ["forecast", path, "--json"], ["report", path, "-o", "report.html"]):
        code, err = run_main(args, capsys, monkeypatch)
        assert_clean_error(code, err, path, row)
    assert snapshot(workdir) == before


@pytest.mark.parametrize("name,content,row", STORES, ids=_case_ids(STORES))
def test_bad_store(name, content, row, workdir, capsys, monkeypatch) -> None:
    from rarecast.errors import InputError
    from rarecast.store import load_scores

    path = write_case(workdir / "bad", name, content)
    before = snapshot(workdir)
    with pytest.raises(InputError) as info:
        load_scores(path)
    assert info.value.file == str(path)
    commands = [
        ["export", path, "-o", "out.jsonl"],
        ["export", path, "-o", "out.parquet"],
        ["forecast", path],
        ["report", path, "-o", "report.html"],
    ]
    if name != "empty.db":  # an empty file is a fine place to start a new store; anything else is refused
        commands.append(["score", "good.jsonl", "--behavior", "good.yaml", "--store", path, "--no-progress"])
    for args in commands:
        code, err = run_main(args, capsys, monkeypatch)
        assert_clean_error(code, err, path, row)
    assert snapshot(workdir) == before


@pytest.mark.parametrize("name,content,row", BEHAVIORS, ids=_case_ids(BEHAVIORS))
def test_bad_behavior(name, content, row, workdir, capsys, monkeypatch) -> None:
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.errors import InputError

    path = write_case(workdir / "bad", name, content)
    before = snapshot(workdir)
    with pytest.raises(InputError) as info:
        load_behavior(path)
    assert info.value.file == str(path) and info.value.row == row
    code, err = run_main(
        ["score", "good.jsonl", "--behavior", path, "--store", "run.db", "--no-progress"], capsys, monkeypatch
    )
    assert_clean_error(code, err, path, row)
    assert snapshot(workdir) == before and not (workdir / "PWNED").exists()


@pytest.mark.parametrize("name,content,row", EXPERIMENTS, ids=_case_ids(EXPERIMENTS))
def test_bad_experiment(name, content, row, workdir, capsys, monkeypatch) -> None:
    from rarecast.errors import InputError
    from rarecast.experiment import load_experiment

    path = write_case(workdir / "bad", name, content)
    (workdir / "bad" / "q.jsonl").write_bytes(GOOD_QUERIES)
    before = snapshot(workdir)
    with pytest.raises(InputError) as info:
        load_experiment(path)
    assert info.value.file == str(path) and info.value.row == row
    code, err = run_main(["run", path, "--no-progress"], capsys, monkeypatch)
    assert_clean_error(code, err, path, row)
    assert snapshot(workdir) == before and not (workdir / "PWNED").exists()


def test_a_sample_through_the_real_process_exits_2(workdir: Path) -> None:
    cases = [("queries", QUERIES, "non-utf8.jsonl"), ("scores", SCORES, "nan.csv"), ("stores", STORES, "foreign.db")]
    for group, table, name in cases:
        content, row = next((c, r) for n, c, r in table if n == name)
        path = write_case(workdir / group, name, content)
        args = {
            "queries": ["score", path, "--behavior", "good.yaml", "--store", "run.db", "--no-progress"],
            "scores": ["forecast", path],
            "stores": ["export", path, "-o", "out.jsonl"],
        }[group]
        before = snapshot(workdir)
        done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)
        assert_clean_error(done.returncode, done.stderr, path, row)
        assert snapshot(workdir) == before


HUGE_MB = 64


@pytest.mark.slow
@pytest.mark.parametrize("command", ["forecast", "score"])
def test_huge_line_fails_cleanly_with_bounded_memory(command: str, workdir: Path) -> None:
    """A 64 MB line (cut before its closing quote): one-line error naming row 1, nothing written, and peak
    memory measured. The loaders read a file whole (tables.utf8_lines), so memory grows with the file: about
    the figure printed here per MB of line; docs/reliability.md records the 1 GB run made by hand."""
    path = huge_line_file(workdir / "huge.jsonl", HUGE_MB, valid_json=False)
    args = (
        ["forecast", path]
        if command == "forecast"
        else ["score", path, "--behavior", "good.yaml", "--store", "run.db", "--no-progress"]
    )
    before = snapshot(workdir)
    # Linux keeps ru_maxrss across exec, so a child forked from this (large) test process would report
    # pytest's own peak; a small launcher measures its child instead (RUSAGE_CHILDREN).
    measured = [
        sys.executable,
        "-c",
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(f'maxrss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}'); sys.exit(r.returncode)",
        *CLI,
    ]
    done = subprocess.run([*measured, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert_clean_error(done.returncode, done.stderr, path, 1)
    assert snapshot(workdir) == before
    peak_mb = int(done.stdout.split("maxrss_kb=")[1].split()[0]) / 1024
    assert peak_mb < 12 * HUGE_MB + 400, f"peak memory {peak_mb:.0f} MB for a {HUGE_MB} MB line"
    err = done.stderr
    print(f"\n{command} on a {HUGE_MB} MB line: exit 2, peak RSS {peak_mb:.0f} MB, {err.strip()[:100]}")
