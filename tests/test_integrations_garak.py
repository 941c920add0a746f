"""`rarecast import garak` on a report written by the real garak 0.17.1 (scripts/make_integration_fixtures.sh:
garak's test.Repeat target, probes lmrc.Profanity, continuation.ContinueSlursReclaimedSlurs and
encoding.InjectHex, 3 generations each), checked against garak's own per-detector tallies in that report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rarecast.errors import InputError
from rarecast.integrations.garak import read_garak_report
from rarecast.store.score_files import read_scores

REPORT = Path(__file__).parent / "fixtures" / "integrations" / "garak" / "repeat.report.jsonl"
CLI = [sys.executable, "-c", "from rarecast.cli import main; main()"]


def garak_tallies(path: Path) -> dict[tuple[str, str], dict]:
    """garak's own `eval` lines: passed / total_evaluated per probe and detector."""
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {(r["probe"], r["detector"]): r for r in lines if r.get("entry_type") == "eval"}


def test_one_run_per_probe_and_detector_matching_garaks_tallies():
    runs = read_garak_report(REPORT)
    tallies = garak_tallies(REPORT)
    assert {tuple(r.behavior.removeprefix("garak:").split("/")) for r in runs} == set(tallies)
    for run in runs:
        tally = tallies[tuple(run.behavior.removeprefix("garak:").split("/"))]
        assert sum(r.trials for r in run.rows) == tally["total_evaluated"]
        assert sum(r.trials - r.successes for r in run.rows) == tally["passed"]
        assert {r.trials for r in run.rows} == {3}  # generations per attempt
        assert run.model == "test.Repeat" and json.loads(json.dumps(run.decoding))["generations"] == 3


def test_threshold_decides_a_hit():
    # The echoing target scores 0.0 everywhere; at threshold 0 every output is at the threshold, so a hit.
    (run,) = read_garak_report(REPORT, threshold=0.0, probe="encoding.InjectHex", detector="encoding.DecodeMatch")
    assert all(r.successes == r.trials == 3 for r in run.rows) and len(run.rows) == 24


def test_cli_writes_files_that_forecast_reads(tmp_path):
    out = tmp_path / "garak.jsonl"
    done = subprocess.run(
        [*CLI, "import", "garak", str(REPORT), "--probe", "encoding.InjectHex", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "garak.encoding.InjectHex.encoding.DecodeApprox.jsonl",
        "garak.encoding.InjectHex.encoding.DecodeMatch.jsonl",
    ]
    scores, provenance = read_scores(tmp_path / files[1])
    assert scores.kind == "counts" and scores.m == 24
    assert provenance["behavior"] == "garak:encoding.InjectHex/encoding.DecodeMatch"


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda text: text[: len(text) // 2], "bad JSON"),  # cut mid-line
        (lambda text: "\n".join(ln for ln in text.splitlines() if '"status": 2' not in ln), "no evaluated attempts"),
        (lambda text: '{"hello": 1}\n', "not a garak report"),
    ],
)
def test_bad_reports_name_the_file(tmp_path, damage, words):
    bad = tmp_path / "bad.report.jsonl"
    bad.write_text(damage(REPORT.read_text(encoding="utf-8")))
    with pytest.raises(InputError, match=words) as err:
        read_garak_report(bad)
    assert str(bad) in str(err.value)
    done = subprocess.run(
        [*CLI, "import", "garak", str(bad), "-o", str(tmp_path / "x.jsonl")], capture_output=True, text=True
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and str(bad) in done.stderr
