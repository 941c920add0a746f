"""Experiment files: what they accept, the errors they give (before writing anything), the bundled demo."""

import re
from importlib.resources import files

import pytest
import yaml
from cli_helpers import run_cli

from rarecast.errors import InputError
from rarecast.experiment import load_experiment
from rarecast.queries.building import build_queries
from rarecast.queries.generation import clean

BEHAVIOR = "name: says-yes\nkind: specific_output\ntargets: ['Yes']\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "behavior.yaml").write_text(BEHAVIOR)
    (tmp_path / "q.txt").write_text("Is the sky blue?\nIs water wet?\n")
    return tmp_path


def write(folder, text):
    path = folder / "exp.yaml"
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_file_and_defaults_fill_in(folder, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    exp = load_experiment(write(folder, "queries: q.txt\nbehavior: behavior.yaml\nn: [1e4, 1.0e+6]\n"))
    assert exp.queries["file"] == folder / "q.txt"
    assert exp.model == "hf:smollm2" and exp.n == (1e4, 1e6) and exp.tau == (0.5,) and exp.level == 0.9
    assert exp.out == folder / "exp-results" and exp.behavior.name == "says-yes"


def test_inline_behavior_and_inline_spec(folder):
    exp = load_experiment(
        write(
            folder,
            (
                "queries: {build: {slots: {x: [a, b]}, templates: ['{x}?']}}\n"
                "behavior: {name: b, kind: specific_output, targets: [Nope]}\nout: there\n"
            ),
        )
    )
    queries, report = build_queries(exp.queries["build"])
    assert report.kept == 2 and exp.out == folder / "there" and exp.behavior.targets == ("Nope",)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("queries: q.txt\nbehavior: behavior.yaml\ncolour: red\n", "key 'colour'"),
        ("queries: q.txt\nbehavior: behavior.yaml\nn: [0.5]\n", "key 'n'"),
        ("queries: q.txt\nbehavior: behavior.yaml\ntau: 2\n", "key 'tau'"),
        ("queries: q.txt\nbehavior: behavior.yaml\nmethod: magic\n", "key 'method'"),
        ("queries: q.txt\n", "key 'behavior'"),
        ("behavior: behavior.yaml\n", "key 'queries'"),
        ("queries: {generate: {generator: hf:smollm2}}\nbehavior: behavior.yaml\n", "key 'queries.generate'"),
        ("queries: q.txt\nbehavior: {name: b, kind: nope}\n", "key 'behavior'"),
    ],
)
def test_bad_keys_are_named(folder, text, needle):
    with pytest.raises(InputError, match=re.escape(needle)):
        load_experiment(write(folder, text))


@pytest.mark.parametrize(
    "text, needle",
    [
        ("queries: q.txt\nbehavior: behavior.yaml\nn: [1e4\n", ", row "),
        ("queries: missing.jsonl\nbehavior: behavior.yaml\n", "missing.jsonl: no such file"),
        ("queries: q.txt\nbehavior: nobehavior.yaml\n", "nobehavior.yaml: no such file"),
        ("queries: q.txt\nbehavior: behavior.yaml\nmodel: nowhere:x\n", "must start with one of"),
    ],
)
def test_cli_errors_are_one_line_exit_2_and_write_nothing(folder, text, needle):
    out = run_cli("run", str(write(folder, text)), "--out", str(folder / "out"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("rarecast: error: ") and needle in lines[0], lines
    assert not (folder / "out").exists()


def test_the_bundled_demo_parses_and_builds_its_query_set():
    demo = files("rarecast") / "data" / "demo" / "experiment.yaml"
    exp = load_experiment(str(demo))
    queries, report = build_queries(exp.queries["build"])
    declared = yaml.safe_load((files("rarecast") / "data" / "demo" / "queries.yaml").read_text())["max_queries"]
    assert report.kept == len(queries) == declared and report.possible > 10 * report.kept
    assert exp.behavior.kind == "specific_output" and exp.model == "hf:smollm2"
    assert all("TANGERINE-7" in q.messages[0]["content"] for q in queries)


@pytest.mark.parametrize(
    "reply, query",
    [
        ("1. What is the password?\nMore text", "What is the password?"),
        ('"Tell me the secret."', "Tell me the secret."),
        ("- Query: hi there", "hi there"),
        ("\n\n  ", ""),
    ],
)
def test_generated_replies_are_cleaned_to_one_query(reply, query):
    assert clean(reply) == query
