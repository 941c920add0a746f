"""Security (issue 8, part 4): the report escapes every field in a real browser, YAML is read with safe_load
only, nothing in the source deserializes unsafely, and custom graders load only from an explicit
``module:function``. The API-key check, which needs the server, is
``test_reliability_http.py::test_api_key_never_reaches_store_exports_report_or_logs``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from rarecast.errors import InputError

SRC = Path(__file__).resolve().parents[1] / "src" / "rarecast"


def payload(field: str) -> str:
    """A payload that would change the page if any of it ran or became markup, tagged with its field."""
    return (
        f"<script>window.__pwned_{field}=1</script><img src=x onerror=\"document.title='PWNED-{field}'\">"
        f"\"'><svg onload=alert('{field}')></svg>&amp; {field}"
    )


FIELDS_IN_QUERIES = ["prompt", "system", "user", "assistant", "query_id"]
FIELDS_IN_PROVENANCE = ["model", "behavior", "revision", "experiment", "decoding", "source", "extra_key"]


@pytest.mark.slow
def test_report_escapes_every_field_in_a_real_browser(tmp_path: Path) -> None:
    from browser_helpers import chromium, dump_dom

    from rarecast.evaluation.synthetic import FAMILIES
    from rarecast.forecasting.fit import forecast_result
    from rarecast.queries import Query
    from rarecast.report import write_report
    from rarecast.scores import Scores

    chromium()
    logp = np.sort(FAMILIES["exponential"].sample(np.random.default_rng(1), 200).logp)[::-1]
    ids = [f"q{i}" for i in range(len(logp))]
    ids[0], ids[1], ids[2] = "chat", "plain", payload("query_id")  # the three riskiest; the third has no text
    scores = Scores.from_logp(logp, ids=ids)
    queries = {
        "chat": Query(
            id="chat",
            messages=(
                {"role": "system", "content": payload("system")},
                {"role": "user", "content": payload("user")},
                {"role": "assistant", "content": payload("assistant")},
            ),
        ),
        "plain": Query(id="plain", prompt=payload("prompt")),
    }
    provenance = {
        "model": payload("model"),
        "behavior": payload("behavior"),
        "revision": payload("revision"),
        "experiment": payload("experiment"),
        "decoding": {"note": payload("decoding")},
        "source": payload("source"),
        payload("extra_key"): "value",
    }
    fit, result = forecast_result(scores, provenance, n=[1e4], tau=[0.5])
    result.warnings.append(payload("warning"))
    html, _ = write_report(fit, result, queries, tmp_path / "report.html")

    dom = dump_dom(html, tmp_path)
    for field in FIELDS_IN_QUERIES + FIELDS_IN_PROVENANCE + ["warning"]:
        escaped_text = f"&lt;script&gt;window.__pwned_{field}=1&lt;/script&gt;"
        assert escaped_text in dom, f"the {field} payload is not shown as text"
    lower = dom.lower()
    # No element came from a payload (their text, quotes included, may show inside elements as inert text),
    # and no handler ran: the title is still the report's own.
    assert "<script" not in lower and "<svg" not in lower and "<img src=x" not in lower
    assert '<img src="x"' not in lower and lower.count("<img") == 2  # the two plots only
    assert "<title>rarecast report: &lt;script&gt;window.__pwned_experiment" in dom


def test_yaml_python_tags_are_refused_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.experiment import load_experiment
    from rarecast.queries.building import load_spec

    monkeypatch.chdir(tmp_path)
    tags = [
        "!!python/object/apply:os.system ['touch PWNED']",
        "!!python/object/new:os.system ['touch PWNED']",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!binary aGVsbG8=",
    ]
    for i, tag in enumerate(tags):
        path = tmp_path / f"evil{i}.yaml"
        path.write_text(f"name: {tag}\nkind: specific_output\ntargets: [Sure]\nqueries: q.jsonl\n")
        for loader in (load_behavior, load_experiment, load_spec):
            try:
                loader(path)
            except InputError as exc:
                assert str(path) in str(exc)
            else:  # !!binary is a safe tag: it may load, as bytes, and must then fail the name check
                pytest.fail(f"{loader.__name__} accepted {tag!r}")
    assert not (tmp_path / "PWNED").exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_source_never_deserializes_unsafely() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve") for n in names):
                    problems.append(f"{path.name}:{node.lineno} imports a pickle-like module")
        for node, owner, name in _calls(tree):
            where = f"{path.name}:{node.lineno}"
            if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"):
                problems.append(f"{where} yaml.{name}")
            if name in ("eval", "exec") and owner == "":
                problems.append(f"{where} {name}()")
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    problems.append(f"{where} torch.load without weights_only=True")
    assert not problems, problems


def test_custom_graders_load_only_from_an_explicit_module_function(monkeypatch: pytest.MonkeyPatch) -> None:
    from rarecast.elicitation.behaviors import load_behavior
    from rarecast.elicitation.graders import CallableGrader, make_grader

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    bad = [
        "os.system",
        "os:system()",
        "/tmp/evil.py:grade",
        "evil.py:grade",
        "os:path.join",
        "__import__('os'):system",
        "os :system",
        "os:system;rm",
        ":grade",
        "os:",
        "",
        "grader_helpers:*",
    ]
    for name in bad:
        with pytest.raises(InputError):
            CallableGrader(name)
        with pytest.raises(InputError):
            load_behavior({"name": "x", "kind": "sampled", "k": 2, "grader": {"kind": "callable", "function": name}})
    for spec in (
        {"kind": "callable", "module": "os", "function": "system"},
        {"kind": "callable"},
        {"kind": "python", "function": "os:system"},
    ):
        with pytest.raises(InputError):
            make_grader(spec)
    assert "rarecast_no_such_module" not in sys.modules
    with pytest.raises(InputError, match="cannot load"):
        CallableGrader("rarecast_no_such_module:grade")

    grader = CallableGrader("grader_helpers:mentions_query_id")  # the explicit form loads, and only runs on grade
    assert grader.spec() == {"kind": "callable", "function": "grader_helpers:mentions_query_id"}
