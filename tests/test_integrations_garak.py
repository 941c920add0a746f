"""`rarecast import garak` on a report written by the real garak 0.17.1 (scripts/make_integration_fixtures.sh:
garak's test.Repeat target, probes lmrc.Profanity, continuation.ContinueSlursReclaimedSlurs and
encoding.InjectHex, 3 generations each), checked against garak's own per-detector tallies in that report.

That report has no hits (the echoing target trips none of those detectors), so hit counting is checked on a
second real garak 0.17.1 report, hits.report.jsonl: garak's test.Test probe (8 prompts) on test.Repeat, 3
generations, seed 0, scored by always.Fail (every output a hit), always.Random (seeded uniform scores, mixed hits
within a prompt) and any.AnyOutput (a hit for any non-empty output, so the empty prompt misses). Made offline, no
model, with garak installed --no-deps in this venv plus its few missing pure-Python imports in an overlay:
  pip install --no-deps --target /tmp/garakdeps xdg-base-dirs lorem==0.1.1 colorama nltk joblib langdetect==1.0.9 \
    markdown
  cd "$(mktemp -d)" && printf 'run:\n  generations: 3\n  seed: 0\nreporting:\n  report_dir: %s\n' "$PWD" > garak.yaml
  PYTHONPATH=/tmp/garakdeps HF_HUB_OFFLINE=1 /work/main/.venv/bin/garak --config garak.yaml --target_type test.Repeat \
    --spec probes.test.Test --detectors always.Fail,always.Random,any.AnyOutput --report_prefix garak_hits
  cp garak_hits.report.jsonl /work/main/tests/fixtures/integrations/garak/hits.report.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

from rarecast.errors import InputError
from rarecast.integrations.garak import read_garak_report
from rarecast.store.score_files import read_scores

REPORT = Path(__file__).parent / "fixtures" / "integrations" / "garak" / "repeat.report.jsonl"
HITS = REPORT.with_name("hits.report.jsonl")


def garak_tallies(path: Path) -> dict[tuple[str, str], dict]:
    """garak's own `eval` lines: passed / total_evaluated per probe and detector."""
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {(r["probe"], r["detector"]): r for r in lines if r.get("entry_type") == "eval"}


@pytest.mark.parametrize("report", [REPORT, HITS], ids=["repeat", "hits"])
def test_one_run_per_probe_and_detector_matching_garaks_tallies(report):
    runs = read_garak_report(report)
    tallies = garak_tallies(report)
    assert {tuple(r.behavior.removeprefix("garak:").split("/")) for r in runs} == set(tallies)
    for run in runs:
        tally = tallies[tuple(run.behavior.removeprefix("garak:").split("/"))]
        assert sum(r.trials for r in run.rows) == tally["total_evaluated"]
        assert sum(r.trials - r.successes for r in run.rows) == tally["passed"]
        assert sum(r.successes for r in run.rows) == tally["fails"]
        assert {r.trials for r in run.rows} == {3}  # generations per attempt
        assert run.model == "test.Repeat" and json.loads(json.dumps(run.decoding))["generations"] == 3


def test_threshold_decides_a_hit():
    # The echoing target scores 0.0 everywhere; at threshold 0 every output is at the threshold, so a hit.
    (run,) = read_garak_report(REPORT, threshold=0.0, probe="encoding.InjectHex", detector="encoding.DecodeMatch")
    assert all(r.successes == r.trials == 3 for r in run.rows) and len(run.rows) == 24


def test_cli_writes_files_that_forecast_reads(tmp_path):
    out = tmp_path / "garak.jsonl"
    done = run_cli("import", "garak", str(REPORT), "--probe", "encoding.InjectHex", "-o", str(out))
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
    done = run_cli("import", "garak", str(bad), "-o", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and str(bad) in done.stderr


def raw_counts(path: Path, threshold: float) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """(probe, detector) -> {seq: (hits, trials)} straight from the report's evaluated attempt lines: an output
    whose score is at or above ``threshold`` is a hit (garak passes a score below its eval_threshold)."""
    cells: dict[tuple[str, str], dict[str, list[int]]] = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(text) if text.strip() else {}
        if entry.get("entry_type") != "attempt" or entry.get("status") != 2:
            continue
        for det, scores in entry["detector_results"].items():
            cell = cells.setdefault((entry["probe_classname"], det), {}).setdefault(str(entry["seq"]), [0, 0])
            cell[0] += sum(1 for s in scores if s is not None and s >= threshold)
            cell[1] += sum(1 for s in scores if s is not None)
    return {key: {q: (h, t) for q, (h, t) in per.items() if t > 0} for key, per in cells.items()}


def run_key(run) -> tuple[str, str]:
    return run.behavior_spec["probe"], run.behavior_spec["detector"]


def read_counts(runs) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """What rarecast read, in the same shape as :func:`raw_counts`."""
    return {run_key(run): {row.query_id: (row.successes, row.trials) for row in run.rows} for run in runs}


def test_hits_fixture_holds_hits_and_misses():
    """Guards the fixture itself: without hits, partial hits and misses the tests below would prove little."""
    raw = raw_counts(HITS, 0.5)
    setup = next(json.loads(t) for t in HITS.read_text(encoding="utf-8").splitlines() if "start_run setup" in t)
    assert setup["run.seed"] == 0 and setup["plugins.target_type"] == "test.Repeat"
    assert set(raw) == {("test.Test", d) for d in setup["plugins.detector_spec"].split(",")}
    cells = [cell for per in raw.values() for cell in per.values()]
    assert any(h == t for h, t in cells) and any(h == 0 for h, t in cells) and any(0 < h < t for h, t in cells)
    tables = list(raw.values())
    assert all(a != b for i, a in enumerate(tables) for b in tables[i + 1 :])  # every detector counts differently
    assert any(tally["fails"] > 0 for tally in garak_tallies(HITS).values())  # garak itself saw hits


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.5, 0.75, 1.0, 1.5])
def test_hit_counts_per_prompt_equal_the_raw_report(threshold):
    runs = read_garak_report(HITS, threshold=threshold)
    assert read_counts(runs) == raw_counts(HITS, threshold)
    assert all(run.behavior_spec["threshold"] == threshold for run in runs)


def test_default_threshold_is_garaks_and_a_changed_threshold_changes_the_hits():
    default = read_garak_report(HITS)
    assert read_counts(default) == raw_counts(HITS, 0.5)  # garak's default eval_threshold
    key = ("test.Test", "always.Random")
    by_threshold = {t: read_counts(read_garak_report(HITS, threshold=t, detector=key[1]))[key] for t in (0.25, 0.75)}
    by_threshold[0.5] = read_counts(default)[key]
    low, mid, high = (by_threshold[t] for t in (0.25, 0.5, 0.75))
    assert low == raw_counts(HITS, 0.25)[key] and high == raw_counts(HITS, 0.75)[key]
    assert low != mid != high  # the seeded scores straddle these thresholds
    assert set(low) == set(mid) == set(high)
    for q in mid:
        assert low[q][1] == mid[q][1] == high[q][1]  # trials do not depend on the threshold
        assert low[q][0] >= mid[q][0] >= high[q][0]
    ids = {read_garak_report(HITS, threshold=t, detector=key[1])[0].behavior_id for t in (0.25, 0.5, 0.75)}
    assert len(ids) == 3  # runs at different thresholds are different behaviors


def test_a_score_at_the_threshold_is_a_hit():
    # garak passes an output whose score is below eval_threshold; always.Fail scores exactly 1.0.
    fail = raw_counts(HITS, 1.0)[("test.Test", "always.Fail")]
    scores = [
        s
        for t in HITS.read_text(encoding="utf-8").splitlines()
        if '"status": 2' in t
        for s in json.loads(t)["detector_results"]["always.Fail"]
    ]
    assert scores and set(scores) == {1.0}
    (run,) = read_garak_report(HITS, threshold=1.0, detector="always.Fail")
    assert all(r.successes == r.trials for r in run.rows) and read_counts([run])[run_key(run)] == fail


def test_per_prompt_hits_match_garaks_hit_at_k():
    """garak's eval lines also carry per-prompt figures: hit@1 is the mean per-prompt hit rate, hit@n (n the
    generations) the share of prompts hit at least once; both must follow from rarecast's per-prompt counts."""
    tallies = garak_tallies(HITS)
    for run in read_garak_report(HITS):
        hit_at = tallies[run_key(run)]["hit_at_k"]
        (n,) = {r.trials for r in run.rows}
        assert hit_at[str(n)]["prompts"] == hit_at["1"]["prompts"] == len(run.rows)
        assert hit_at[str(n)]["score"] == pytest.approx(sum(r.successes > 0 for r in run.rows) / len(run.rows))
        assert hit_at["1"]["score"] == pytest.approx(sum(r.successes / r.trials for r in run.rows) / len(run.rows))


def test_cli_threshold_reaches_the_written_counts(tmp_path):
    out = tmp_path / "random.jsonl"
    done = run_cli("import", "garak", str(HITS), "--detector", "always.Random", "--threshold", "0.25", "-o", str(out))
    assert done.returncode == 0, done.stderr
    scores, provenance = read_scores(out)
    assert scores.kind == "counts" and provenance["behavior"] == "garak:test.Test/always.Random"
    written = {q: (int(s), int(t)) for q, s, t in zip(scores.ids, scores.successes, scores.trials, strict=True)}
    assert written == raw_counts(HITS, 0.25)[("test.Test", "always.Random")]
