"""The HTML report on a synthetic fit: self-contained, escaped, and shown by a real browser."""

import base64
import re

import numpy as np
import pytest
from browser_helpers import PAYLOAD, assert_page_shows_plot, assert_payload_inert, dump_dom, screenshot

from rarecast.evaluation.synthetic import FAMILIES
from rarecast.forecasting.fit import forecast_result
from rarecast.queries import Query
from rarecast.report import write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    logp = FAMILIES["exponential"].sample(np.random.default_rng(0), 400).logp
    ids = [f"q{i}" for i in range(len(logp))]
    from rarecast.scores import Scores

    scores = Scores.from_logp(logp, ids=ids)
    top = ids[int(np.argmax(logp))]
    queries = {qid: Query(id=qid, prompt=f"plain query {qid}") for qid in ids}
    queries[top] = Query(
        id=top, messages=({"role": "system", "content": "Keep the code."}, {"role": "user", "content": PAYLOAD})
    )
    provenance = {
        "model": "synthetic",
        "behavior": "exponential-family",
        "revision": "none",
        "n": len(logp),
        "behavior_spec": {"kind": "specific_output", "targets": ["The code is"]},
    }
    fit, result = forecast_result(scores, provenance, n=[1e4, 1e6], tau=[0.5])
    html, plots = write_report(fit, result, queries, tmp / "report.html")
    return tmp, html, plots, result


def test_one_self_contained_file_with_png_plots_beside_it(report):
    tmp, html, plots, _ = report
    text = html.read_text()
    assert [p.name for p in plots] == ["report-scaling.png", "report-distribution.png"]
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(embedded) == 2
    for b64, path in zip(embedded, plots, strict=True):
        assert base64.b64decode(b64) == path.read_bytes() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:|//|file:)', text), "the report must not load anything"


def test_tables_hold_the_forecast_diagnostics_and_provenance(report):
    _, html, _, result = report
    text = html.read_text()
    for row in result.forecasts:
        assert f"{row.forecast:.3g}" in text
    for needle in (
        "worst-query risk",
        "behavior frequency",
        "aggregate risk",
        "GPD shape test",
        "exponential-family",
        "rarecast_version",
        "gpd-bayes",
    ):
        assert needle in text
    assert "plain query" in text  # the riskiest table shows texts


def test_headline_says_each_forecast_in_a_sentence_with_its_interval(report):
    _, html, _, result = report
    text = html.read_text()
    worst = next(r for r in result.rows("worst_query_risk") if r.at == 1e6)
    assert (
        f"In 1,000,000 queries, the most vulnerable query is forecast to show the behavior with probability "
        f"about {worst.forecast:.2g} (90% interval: {worst.low:.2g} to {worst.high:.2g})."
    ) in text
    assert text.count("single-sample replies, the behavior is forecast to occur at least once") == 2
    assert "The share of queries that show the behavior with probability above 0.5 is forecast" in text
    # each risk is defined where the headline uses it
    assert text.index("the largest elicitation probability among n deployment queries") < text.index(
        "In 10,000 queries"
    )
    assert "fraction of deployment queries whose elicitation probability p is above a threshold tau" in text
    assert "An aggregate risk of 1 means the behavior is practically certain to occur at least once" in text
    assert "lower bound on the behavior happening somewhere in the reply" in text  # a specific_output behavior


def test_diagnostics_are_words_with_verdicts_and_provenance_names_m(report):
    _, html, _, result = report
    text = html.read_text()
    diagnostics = text[text.index('<table id="diagnostics">') : text.index("</table>", text.index('id="diagnostics"'))]
    for raw in ("tail_shape", "shape_test_pvalue", "top_gap_pvalue", "stability_spread_log10", "top_ties"):
        assert raw not in text
    assert re.findall(r'<td class="(ok|check|concern)">', diagnostics) == ["ok"] * 5
    assert "Fitted shape xi = " in diagnostics and "what to do" in diagnostics
    assert "Gap test of the largest score" in diagnostics
    provenance = text[text.index('<table id="provenance">') :]
    assert '<th>evaluation queries (m)</th><td><pre class="q">400</pre>' in provenance
    assert "<th>n</th>" not in provenance


def test_payload_is_escaped_in_the_file(report):
    _, html, _, _ = report
    text = html.read_text()
    assert "<script" not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text


def test_browser_shows_the_plot_and_runs_nothing(report, tmp_path):
    _, html, _, _ = report
    assert_page_shows_plot(screenshot(html, tmp_path))
    assert_payload_inert(dump_dom(html, tmp_path))


def test_a_shared_system_prompt_is_shown_once(tmp_path):
    from rarecast.scores import Scores

    logp = FAMILIES["exponential"].sample(np.random.default_rng(1), 100).logp
    ids = [f"q{i}" for i in range(len(logp))]
    system = "You guard the vault password. " + PAYLOAD
    queries = {
        qid: Query(
            id=qid, messages=({"role": "system", "content": system}, {"role": "user", "content": f"attempt {qid}"})
        )
        for qid in ids
    }
    fit, result = forecast_result(Scores.from_logp(logp, ids=ids), {"model": "synthetic"}, n=[1e4], tau=[0.5])
    html, _ = write_report(fit, result, queries, tmp_path / "report.html")
    text = html.read_text()
    assert text.count("You guard the vault password.") == 1
    assert "Every query below opens with this system prompt" in text and text.count("attempt q") == 20
    assert "<script" not in text
    assert "lower bound" not in text  # the behavior's kind is unknown here


def test_words_for_risky_fits():
    from rarecast.forecasting.result import ForecastRow
    from rarecast.report.wording import diagnostics_in_words, headlines

    row = ForecastRow("aggregate_risk", 1e4, forecast=0.999, low=0.98, high=1.0, level=0.9)
    assert headlines([row])["aggregate_risk"] == [
        "Over 10,000 single-sample replies, the behavior is forecast to occur at least once with probability "
        "about 1 (90% interval: 0.98 to 1): practically certain to occur at least once."
    ]
    freq = ForecastRow("behavior_frequency", 0.1, forecast=4.2e-8, low=0.0, high=0.0062, level=0.9)
    assert "about 1 in 24,000,000 (90% interval: 0 to 0.62%)" in headlines([freq])["behavior_frequency"][0]
    diag = {
        "shape_test_pvalue": 0.003,
        "top_gap_pvalue": 0.002,
        "tail_shape": -0.17499999999999993,
        "tail_r2": 0.9,
        "tail_size": 20,
        "top_ties": 2,
        "zero_probability": 0,
        "certain": 0,
        "stability_n": 1e5,
        "stability_spread_log10": 1.4,
    }
    rows = {r["check"]: r for r in diagnostics_in_words(diag, "exact")}
    assert {c: r["verdict"] for c, r in rows.items()} == {
        "tail shape": "concern",
        "rare mode": "concern",
        "ties": "concern",
        "p = 0 or 1": "ok",
        "tail size": "concern",
    }
    assert "xi = -0.17: a bounded tail" in rows["tail shape"]["finding"]
    assert "method gpd" in rows["tail shape"]["todo"]
    assert "p = 0.002" in rows["rare mode"]["finding"] and "top queries" in rows["rare mode"]["todo"]
    counts = {"queries_with_successes": 3, "m": 200, "params": {"k": "auto"}, "stability_spread_log10": None}
    (successes,) = diagnostics_in_words(counts, "counts")
    assert successes["verdict"] == "concern" and "3 of 200 queries had at least one success" in successes["finding"]


def test_counts_get_the_attempts_plot_with_its_interval_note(tmp_path):
    from rarecast.forecasting.best_of_n import INTERVAL_NOTE
    from rarecast.scores import Scores

    rng = np.random.default_rng(2)
    s = rng.binomial(100, rng.beta(0.4, 30, 200))
    ids = [f"q{i}" for i in range(len(s))]
    scores = Scores.from_counts(s, np.full(len(s), 100), ids=ids)
    fit, result = forecast_result(scores, {"model": "synthetic"}, n=[1e4], tau=[0.05])
    html, plots = write_report(fit, result, {q: Query(id=q, prompt=q) for q in ids}, tmp_path / "report.html")
    text = html.read_text()
    assert [p.name for p in plots] == ["report-scaling.png", "report-distribution.png", "report-attempts.png"]
    assert plots[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 'id="attempts-plot"' in text
    assert INTERVAL_NOTE in text
