"""`rarecast forecast` end to end, through the installed console script, on real files."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import run_cli

from rarecast.evaluation.synthetic import FAMILIES


@pytest.fixture(scope="module")
def logp():
    return FAMILIES["exponential"].sample(np.random.default_rng(0), 500).logp


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_json_output_matches_the_python_api(tmp_path, logp):
    import rarecast as rc

    f = write_jsonl(
        tmp_path / "s.jsonl", [{"id": f"q{i}", "logp": float(v), "model": "m1"} for i, v in enumerate(logp)]
    )
    out = run_cli("forecast", str(f), "--n", "1e4", "--n", "1e6", "--tau", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    fit = rc.fit_tail(logp)
    worst = [r for r in doc["forecasts"] if r["risk"] == "worst_query_risk"]
    assert [r["n"] for r in worst] == [1e4, 1e6]
    assert np.allclose([r["forecast"] for r in worst], fit.worst_query_risk([1e4, 1e6]), rtol=1e-12)
    assert all(r["low"] <= r["forecast"] <= r["high"] for r in doc["forecasts"])
    assert doc["provenance"] == {"model": "m1"} and doc["rarecast_version"]
    assert doc["diagnostics"]["tail_size"] == 22


def test_table_output_and_formats_agree(tmp_path, logp):
    csv = tmp_path / "s.csv"
    csv.write_text("id,p\n" + "".join(f"q{i},{float(np.exp(v))!r}\n" for i, v in enumerate(logp)))
    parquet = tmp_path / "s.parquet"
    pq.write_table(pa.table({"query_id": [f"q{i}" for i in range(len(logp))], "logp": logp}), parquet)
    docs = [json.loads(run_cli("forecast", str(p), "--json", "--method", "gumbel-ols").stdout) for p in (csv, parquet)]
    a, b = ([r["forecast"] for r in d["forecasts"]] for d in docs)
    assert np.allclose(a, b, rtol=1e-9)
    table = run_cli("forecast", str(parquet), "--n", "1e5")
    assert table.returncode == 0 and "worst-query risk" in table.stdout and "90% interval" in table.stdout


def test_counts_file(tmp_path):
    rng = np.random.default_rng(2)
    p = np.exp(
        FAMILIES["exponential-k500"].sample_psi(rng, 600) * 0
        - np.exp(-FAMILIES["exponential-k500"].sample_psi(rng, 600))
    )
    s = rng.binomial(500, p)
    f = write_jsonl(tmp_path / "c.jsonl", [{"id": i, "successes": int(x), "trials": 500} for i, x in enumerate(s)])
    out = run_cli("forecast", str(f), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == "binomial"


BAD = [
    ("nan.jsonl", '{"logp": -1}\n{"logp": NaN}\n', "row 2", "NaN"),
    ("pos.jsonl", '{"logp": -1}\n{"logp": -2}\n{"logp": 0.5}\n', "row 3", "> 0"),
    ("p.csv", "p\n0.1\n1.5\n", "row 3", "[0, 1]"),
    ("empty.jsonl", "", None, "holds no scores"),
    ("json.jsonl", '{"logp": -1}\n{"logp": \n', "row 2", "bad JSON"),
    ("array.json", '\n[{"logp": -1},\n {"logp": -2}]\n', "row 2", "looks like a JSON array"),
    ("cols.jsonl", '{"score": -1}\n', "row 1", "needs a 'logp'"),
    ("text.jsonl", '{"logp": "high"}\n', "row 1", "not a number"),
    ("dup.jsonl", '{"id": "a", "logp": -1}\n{"id": "a", "logp": -2}\n', "row 2", "duplicate query id"),
    ("bytes.jsonl", b'{"logp": -1}\n\xff\xfe\x00garbage\n', "row 2", "UTF-8"),
    ("counts.jsonl", '{"successes": 5, "trials": 3}\n', "row 1", "successes=5"),
    ("few.jsonl", '{"logp": -1}\n{"logp": -2}\n', None, "needs more than"),
    ("scores.txt", "x", None, "unknown score file type"),
]


@pytest.mark.parametrize("name, content, row, problem", BAD)
def test_bad_files_fail_with_one_line_naming_file_and_row(tmp_path, name, content, row, problem):
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = sorted(p.name for p in tmp_path.iterdir())
    out = run_cli("forecast", str(f), cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert problem in lines[0] and (row is None or f"{name}, {row}" in lines[0]), lines[0]
    if problem != "needs more than":  # file errors name the file; fit errors name the problem
        assert name in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_unknown_method_and_missing_file(tmp_path, logp):
    f = write_jsonl(tmp_path / "s.jsonl", [{"logp": float(v)} for v in logp])
    out = run_cli("forecast", str(f), "--method", "magic")
    assert out.returncode == 2 and "unknown method 'magic'" in out.stderr
    out = run_cli("forecast", str(tmp_path / "missing.jsonl"))
    assert out.returncode == 2 and "missing.jsonl: no such file" in out.stderr


def test_quantile_sets_the_point_forecasts(tmp_path, logp):
    import rarecast as rc

    f = write_jsonl(tmp_path / "s.jsonl", [{"logp": float(v)} for v in logp])
    out = run_cli("forecast", str(f), "--n", "1e4", "--n", "1e6", "--quantile", "0.75", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["quantile"] == 0.75
    fit = rc.fit_tail(logp)
    for row in doc["forecasts"]:
        x = row.get("n", row.get("tau"))
        assert row["forecast"] == pytest.approx(fit.forecast(row["risk"], x, quantile=0.75), rel=1e-12)
        assert row["forecast"] >= fit.forecast(row["risk"], x, quantile=0.5)  # above the median
    table = run_cli("forecast", str(f), "--n", "1e4", "--quantile", "0.75")
    assert table.returncode == 0 and "0.75 quantile" in table.stdout


@pytest.mark.parametrize("bad", ["0", "1", "-0.1", "nan"])
def test_a_bad_quantile_fails_with_one_line_before_reading_the_file(tmp_path, bad):
    out = run_cli("forecast", str(tmp_path / "missing.jsonl"), "--quantile", bad)
    assert out.returncode == 2
    assert out.stderr.startswith("rarecast: error: --quantile must lie strictly between 0 and 1")
    assert out.stderr.count("\n") == 1, out.stderr


def test_related_behaviors_pool_the_shape_prior(tmp_path):
    import rarecast as rc

    rng = np.random.default_rng(5)
    tables = [FAMILIES["bounded"].sample(rng, 300).logp for _ in range(3)]
    paths = [write_jsonl(tmp_path / f"b{i}.jsonl", [{"logp": float(v)} for v in t]) for i, t in enumerate(tables)]
    out = run_cli("forecast", paths[0], "--related", paths[1], "--related", paths[2], "--json", "--n", "1e5")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    prior = rc.pooled_shape_prior(tables[1:])
    assert doc["params"]["prior_mean"] == pytest.approx(prior.mean, rel=1e-12)
    assert doc["params"]["prior_sd"] == pytest.approx(prior.sd, rel=1e-12)
    assert doc["provenance"]["shape_prior_from"] == [str(p) for p in paths[1:]]
    # the accuracy benchmark measured the default prior, so the note on the intervals points to the pooling one
    assert any("docs/shape-pooling.md" in w for w in doc["warnings"])
    assert not any("shape-pooling" in w for w in json.loads(run_cli("forecast", paths[0], "--json").stdout)["warnings"])
    fit = rc.fit_tail(tables[0], **prior.params())
    worst = next(r for r in doc["forecasts"] if r["risk"] == "worst_query_risk")
    assert worst["forecast"] == pytest.approx(float(fit.worst_query_risk(1e5)), rel=1e-12)


def test_related_behaviors_refuse_counts_and_name_an_unfittable_file(tmp_path, logp):
    main = write_jsonl(tmp_path / "main.jsonl", [{"logp": float(v)} for v in logp])
    tiny = write_jsonl(tmp_path / "tiny.jsonl", [{"logp": float(v)} for v in logp[:5]])
    out = run_cli("forecast", main, "--related", tiny)
    assert out.returncode == 2 and out.stdout == ""
    assert f"{tiny}: --related:" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = run_cli("forecast", main, "--related", main)
    assert out.returncode == 2 and "names the scores being forecast" in out.stderr
    counts = write_jsonl(tmp_path / "counts.jsonl", [{"successes": 1, "trials": 10}] * 50)
    out = run_cli("forecast", counts, "--related", main)
    assert out.returncode == 2 and "exact scores" in out.stderr


def test_related_behaviors_can_be_named_in_the_same_store(tmp_path):
    import rarecast as rc
    from rarecast.elicitation.behaviors import Outcome, SpecificOutput, run_key
    from rarecast.store import Store

    class Described:  # provenance fields of a backend: the store reads only these
        model_id, revision = "hf:test-model", "rev-1"

        def describe(self):
            return {"backend": "hf"}

    rng = np.random.default_rng(6)
    tables = {name: FAMILIES["bounded"].sample(rng, 200).logp for name in ("one", "two", "three")}
    db = tmp_path / "run.db"
    with Store(db) as store:
        for name, logp in tables.items():
            key = run_key(Described(), SpecificOutput([f"target {name}"], name=name))
            store.write(key, [(f"q{i}", Outcome(logp=float(v))) for i, v in enumerate(logp)])
    out = run_cli("forecast", db, "--behavior", "one", "--related", "two", "--related", "three", "--json")
    assert out.returncode == 0, out.stderr
    prior = rc.pooled_shape_prior([tables["two"], tables["three"]])
    assert json.loads(out.stdout)["params"]["prior_mean"] == pytest.approx(prior.mean, rel=1e-12)
    out = run_cli("forecast", db, "--behavior", "one", "--related", "absent")
    assert out.returncode == 2 and str(db) in out.stderr and "absent" in out.stderr
    out = run_cli("forecast", db, "--behavior", "one", "--related", "one")
    assert out.returncode == 2 and "names the scores being forecast" in out.stderr


def test_the_report_takes_related_behaviors_too(tmp_path):
    rng = np.random.default_rng(8)
    tables = [FAMILIES["bounded"].sample(rng, 300).logp for _ in range(2)]
    paths = [write_jsonl(tmp_path / f"b{i}.jsonl", [{"logp": float(v)} for v in t]) for i, t in enumerate(tables)]
    out = run_cli("report", paths[0], "--related", paths[1], "-o", tmp_path / "report.html")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "report.html").read_text()
    assert "docs/shape-pooling.md" in text and "prior_mean" in text  # the pooled prior's note and settings
    plain = run_cli("report", paths[0], "-o", tmp_path / "plain.html")
    assert plain.returncode == 0 and "docs/shape-pooling.md" not in (tmp_path / "plain.html").read_text()
