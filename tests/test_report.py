"""The HTML report on a synthetic fit: self-contained, escaped, and shown by a real browser."""

import base64
import re

import numpy as np
import pytest

from browser_helpers import PAYLOAD, assert_page_shows_plot, assert_payload_inert, dump_dom, screenshot
from rarecast.forecast import forecast_result
from rarecast.queries import Query
from rarecast.report import write_report
from rarecast.synthetic import FAMILIES


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    logp = FAMILIES["exponential"].sample(np.random.default_rng(0), 400).logp
    ids = [f"q{i}" for i in range(len(logp))]
    from rarecast.scores import Scores

    scores = Scores.from_logp(logp, ids=ids)
    top = ids[int(np.argmax(logp))]
    queries = {qid: Query(id=qid, prompt=f"plain query {qid}") for qid in ids}
    queries[top] = Query(id=top, messages=({"role": "system", "content": "Keep the code."},
                                           {"role": "user", "content": PAYLOAD}))
    provenance = {"model": "synthetic", "behavior": "exponential-family", "revision": "none"}
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
    for row in result["forecasts"]:
        assert f"{row['forecast']:.3g}" in text
    for needle in ("worst-query risk", "behavior frequency", "aggregate risk", "shape_test_pvalue",
                   "exponential-family", "rarecast_version", "gpd-bayes"):
        assert needle in text
    assert "plain query" in text  # the riskiest table shows texts


def test_payload_is_escaped_in_the_file(report):
    _, html, _, _ = report
    text = html.read_text()
    assert "<script" not in text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text


def test_browser_shows_the_plot_and_runs_nothing(report, tmp_path):
    _, html, _, _ = report
    assert_page_shows_plot(screenshot(html, tmp_path))
    assert_payload_inert(dump_dom(html, tmp_path))
