"""`rarecast import lm-eval` on sample files written by the real lm-evaluation-harness 0.4.13
(scripts/make_integration_fixtures.sh: the embedded SmolLM2-135M-Instruct, fp32 on CPU, a two-option
multiple-choice task and a loglikelihood task over 20 local docs), checked against lm-eval's own numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_helpers import run_cli

from rarecast.errors import InputError
from rarecast.integrations.lm_eval import read_lm_eval_samples
from rarecast.store.score_files import read_scores

FIXTURES = Path(__file__).parent / "fixtures" / "integrations" / "lm_eval"
(LL,) = FIXTURES.glob("samples_rarecast_comply_ll_*.jsonl")
(MC,) = FIXTURES.glob("samples_rarecast_comply_mc_*.jsonl")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_loglikelihood_task_is_exact_log_p_with_the_model_from_results():
    (run,) = read_lm_eval_samples([LL])
    raw = {str(r["doc_id"]): float(r["filtered_resps"][0][0]) for r in records(LL)}
    assert {r.query_id: r.logp for r in run.rows} == raw and len(raw) == 20
    assert run.model.startswith("hf:") and run.model.endswith("SmolLM2-135M-Instruct")
    assert run.behavior == "lm-eval:rarecast_comply_ll"


def test_multiple_choice_target_agrees_with_lm_evals_accuracy():
    (run,) = read_lm_eval_samples([MC], choice="target")
    acc = {str(r["doc_id"]): r["acc"] for r in records(MC)}
    # Two options renormalized: the gold option is more likely than not exactly when lm-eval scored acc = 1.
    assert {r.query_id: float(math.exp(r.logp) > 0.5) for r in run.rows} == acc


def test_multiple_choice_option_raw_or_renormalized():
    (raw,) = read_lm_eval_samples([MC], choice="0", renormalize=False)
    (norm,) = read_lm_eval_samples([MC], choice="0")
    for rec, r_raw, r_norm in zip(records(MC), raw.rows, norm.rows):
        yes, no = (float(x[0]) for x in rec["filtered_resps"])
        assert r_raw.logp == yes
        assert r_norm.logp == pytest.approx(yes - math.log(math.exp(yes) + math.exp(no)), abs=1e-12)


def test_cli_table_feeds_forecast(tmp_path):
    out = tmp_path / "mc.parquet"
    done = run_cli("import", "lm-eval", str(MC), "--choice", "0", "-o", str(out))
    assert done.returncode == 0, done.stderr
    scores, provenance = read_scores(out)
    assert scores.kind == "exact" and scores.m == 20 and provenance["behavior"] == "lm-eval:rarecast_comply_mc[0]"
    done = run_cli("forecast", str(out), "--method", "gumbel-ols", "--n", "1e4", "--json")
    assert done.returncode == 0, done.stderr


def test_multiple_choice_needs_a_choice():
    with pytest.raises(InputError, match=r"2 options; choose one with --choice") as err:
        read_lm_eval_samples([MC])
    assert str(MC) in str(err.value) and "row 1" in str(err.value)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda recs, text: text[: len(text) // 2], "bad JSON"),
        (
            lambda recs, text: json.dumps({**recs[0], "filtered_resps": ["Sure, here you go"]}) + "\n",
            "only loglikelihood and multiple_choice",
        ),
        (
            lambda recs, text: json.dumps({k: v for k, v in recs[0].items() if k != "filtered_resps"}) + "\n",
            "no 'filtered_resps'",
        ),
    ],
)
def test_bad_samples_name_the_file(tmp_path, damage, words):
    bad = tmp_path / LL.name
    bad.write_text(damage(records(LL), LL.read_text(encoding="utf-8")))
    with pytest.raises(InputError, match=words) as err:
        read_lm_eval_samples([bad], model="hf:x")
    assert str(bad) in str(err.value)
    done = run_cli("import", "lm-eval", str(bad), "--model", "hf:x", "-o", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and str(bad) in done.stderr
