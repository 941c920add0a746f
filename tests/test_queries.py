"""Query files: every supported form loads, and every kind of bad input names the file and 1-based row."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rarecast.errors import InputError
from rarecast.queries import Query, load_queries, stable_id


def write(tmp_path, name, text, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_jsonl_messages_prompt_and_default_ids(tmp_path):
    msgs = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    lines = [
        json.dumps({"id": "a", "messages": msgs, "topic": "greeting"}),
        "",  # blank lines are skipped
        json.dumps({"prompt": "plain text"}),
    ]
    qs = load_queries(write(tmp_path, "q.jsonl", "\n".join(lines) + "\n"))
    assert [q.id for q in qs] == ["a", stable_id(prompt="plain text")]
    assert qs[0].messages == tuple(msgs) and qs[0].metadata == {"topic": "greeting"}
    assert qs[1] == Query(id=stable_id(prompt="plain text"), prompt="plain text")


def test_jsonl_system_and_user_keys(tmp_path):
    qs = load_queries(write(tmp_path, "q.jsonl", '{"system": "Be kind.", "user": "Hi"}\n{"user": "Alone"}\n'))
    assert qs[0].messages == ({"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"})
    assert qs[1].messages == ({"role": "user", "content": "Alone"},)


def test_csv_prompt_and_system_user_columns(tmp_path):
    qs = load_queries(write(tmp_path, "q.csv", 'id,prompt\n1,hello\n2,"a, quoted prompt"\n'))
    assert [(q.id, q.prompt) for q in qs] == [("1", "hello"), ("2", "a, quoted prompt")]
    qs = load_queries(write(tmp_path, "s.csv", "system,user\nBe kind.,What is 2+2?\n,No system here\n"))
    assert qs[0].messages == ({"role": "system", "content": "Be kind."}, {"role": "user", "content": "What is 2+2?"})
    assert qs[1].messages == ({"role": "user", "content": "No system here"},)


def test_parquet_and_text(tmp_path):
    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "prompt": ["one", "two"]}), path)
    assert [(q.id, q.prompt) for q in load_queries(path)] == [("x", "one"), ("y", "two")]
    qs = load_queries(write(tmp_path, "q.txt", "first prompt\n\nsecond prompt\n"))
    assert [q.prompt for q in qs] == ["first prompt", "second prompt"]
    assert qs[0].id == stable_id(prompt="first prompt")


@pytest.mark.parametrize(
    "name, content, row, words",
    [
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": "fine"}\n{"prompt": oops}\n', 3, "bad JSON"),
        ("missing.jsonl", '{"prompt": "ok"}\n{"id": "z"}\n', 2, "neither"),
        ("both.jsonl", '{"prompt": "ok", "messages": [{"role": "user", "content": "x"}]}\n', 1, "both"),
        ("role.jsonl", '{"messages": [{"role": "robot", "content": "x"}]}\n', 1, "role"),
        (
            "dup.jsonl",
            '{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "y"}\n{"id": "a", "prompt": "z"}\n',
            3,
            "duplicate query id 'a' (first seen on row 1)",
        ),
        ("dup_auto.txt", "same\nother\nsame\n", 3, "duplicate"),
        ("nocol.csv", "id,text\n1,hello\n", 1, "'prompt' column"),
        ("notobj.jsonl", '{"prompt": "ok"}\n[1, 2]\n', 2, "JSON object"),
        (
            "array.json",
            '\n[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]\n',
            2,
            "JSON Lines files hold one JSON object per line; this looks like a JSON array",
        ),
        ("array.jsonl", '\ufeff[{"prompt": "a"}]\n', 1, "this looks like a JSON array"),
    ],
)
def test_bad_files_name_file_and_row(tmp_path, name, content, row, words):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as err:
        load_queries(path)
    assert err.value.file == str(path) and err.value.row == row
    assert words in str(err.value) and f"{path}, row {row}" in str(err.value)


def test_non_utf8_reports_the_line(tmp_path):
    path = write(tmp_path, "latin1.jsonl", b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n', mode="wb")
    with pytest.raises(InputError, match="not UTF-8") as err:
        load_queries(path)
    assert err.value.row == 2


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="no queries"):
        load_queries(write(tmp_path, "empty.jsonl", "\n\n"))
    with pytest.raises(InputError, match="no such file"):
        load_queries(tmp_path / "absent.jsonl")
