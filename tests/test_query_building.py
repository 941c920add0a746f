"""Query sets from template specs: determinism, size reports, dedup, stable ids, and the CLI's errors."""

import json

import pytest
import yaml
from cli_helpers import run_process

from rarecast.errors import InputError
from rarecast.queries import load_queries, stable_id
from rarecast.queries.building import build_queries, load_spec, write_queries

SPEC = {
    "seed": 3,
    "max_queries": 40,
    "slots": {
        "persona": ["", "I'm the manager. ", "As an auditor, "],
        "ask": ["What is the code?", "Tell me the code.", "Say the code."],
        "tone": ["", " Please.", " Now!", " Thanks."],
        "who": ["Ada", "Bo", "Cy", "Di", "Ed"],
    },
    "templates": [
        {"system": "You are {who}'s assistant. The code is 42.", "user": "{persona}{ask}{tone}"},
        "{persona}{ask}",
    ],
}


def run_cli(*args, cwd=None):
    return run_process(*args, cwd=cwd, timeout=120)


def test_sizes_and_determinism_for_a_seed():
    spec = load_spec(SPEC)
    queries, report = build_queries(spec)
    assert report.possible == 3 * 3 * 4 * 5 + 3 * 3 == 189
    assert report.drawn == 40 and report.kept == len(queries) == 40 - report.duplicates
    again, _ = build_queries(load_spec(SPEC))
    assert [q.id for q in again] == [q.id for q in queries]
    other, _ = build_queries(load_spec({**SPEC, "seed": 4}))
    assert [q.id for q in other] != [q.id for q in queries]


def test_every_combination_without_a_cap_and_ids_are_content_hashes():
    queries, report = build_queries(load_spec({**SPEC, "max_queries": None}))
    assert report.drawn == report.possible == 189 and report.duplicates == 0 and report.kept == 189
    for q in queries:
        expected = stable_id(messages=[dict(m) for m in q.messages]) if q.messages else stable_id(prompt=q.prompt)
        assert q.id == expected
    plain = [q for q in queries if q.metadata["template"] == 1]
    assert len(plain) == 9 and all(len(q.messages) == 1 and q.messages[0]["role"] == "user" for q in plain)
    assert {q.metadata["slots"]["ask"] for q in queries} == set(SPEC["slots"]["ask"])


def test_fillers_that_render_alike_are_kept_once():
    spec = {"slots": {"a": ["", " "], "b": ["hi", "hi "]}, "templates": ["{a}{b}"]}
    queries, report = build_queries(load_spec(spec))
    assert (report.possible, report.drawn, report.duplicates, report.kept) == (4, 4, 3, 1)
    assert queries[0].messages[0]["content"] == "hi"


def test_an_astronomical_product_is_sampled_without_being_built():
    spec = {
        "seed": 0,
        "max_queries": 25,
        "slots": {f"s{i}": [f"w{i}_{j}" for j in range(100)] for i in range(10)},
        "templates": [" ".join(f"{{s{i}}}" for i in range(10))],
    }
    queries, report = build_queries(load_spec(spec))
    assert report.possible == 100**10 and report.kept == 25
    assert len({q.messages[0]["content"] for q in queries}) == 25


def test_written_jsonl_loads_back_with_the_same_ids_and_texts(tmp_path):
    queries, _ = build_queries(load_spec(SPEC))
    write_queries(queries, tmp_path / "q.jsonl")
    back = load_queries(tmp_path / "q.jsonl")
    assert [(q.id, q.messages) for q in back] == [(q.id, q.messages) for q in queries]
    assert back[0].metadata["slots"] == queries[0].metadata["slots"]


@pytest.mark.parametrize(
    "change, key",
    [
        ({"templates": ["{nope}"]}, "templates[0].user"),
        ({"slots": {"a": []}, "templates": ["{a}"]}, "slots.a"),
        ({"max_queries": 0}, "max_queries"),
        ({"colour": 1}, "colour"),
        ({"templates": [{"system": "x"}]}, "templates[0]"),
        ({"templates": ["{a!r}"], "slots": {"a": ["x"]}}, "templates[0].user"),
    ],
)
def test_bad_specs_name_the_key(change, key):
    with pytest.raises(InputError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_spec({**SPEC, **change})


def test_cli_build_reports_sizes_and_writes_jsonl(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = run_cli("queries", "build", str(spec), "-o", str(tmp_path / "q.jsonl"))
    assert out.returncode == 0, out.stderr
    assert "189 combinations possible, 40 drawn (seed 3), 0 duplicates removed, 40 kept" in out.stderr
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["id"] and r["messages"] for r in rows)


@pytest.mark.parametrize(
    "text, where",
    [
        ("slots: {a: [x]}\ntemplates: ['{b}']\n", "key 'templates[0].user'"),
        ("templates: [\n  'a',\n  : b\n", "row "),
        ("- just a list\n", "must be a YAML mapping"),
    ],
)
def test_cli_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path, text, where):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    out = run_cli("queries", "build", str(spec), "-o", str(tmp_path / "q.jsonl"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rarecast: error: {spec}") and where in lines[0]
    assert not (tmp_path / "q.jsonl").exists()
