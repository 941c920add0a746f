"""The bad-input corpus: ``CASES`` lists every file, the command that reads it and what the error must say.

Generated rather than stored, so that binary garbage, non-UTF-8 bytes, truncated Parquet/SQLite files and
huge lines need no binary blobs in git. ``python -m tests.bad_inputs.corpus DIR`` writes the whole corpus to
DIR for manual poking (e.g. ``rarecast forecast DIR/scores/nan.jsonl``).

Each case: ``(group, name, content, row)``. ``content`` is bytes, or a callable ``(path) -> None`` that
writes the file (Parquet, SQLite). ``row`` is the 1-based row the error must name, or None where no single row
is to blame (an empty file, a semantic error in a YAML mapping, a file that is not a table at all).
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

Content = bytes | Callable[[Path], None]

GARBAGE = b"\x89PNG\x00\xff" + random.Random(8).randbytes(4090)  # seeded: the same bytes every run; not UTF-8
GOOD_QUERY = b'{"id": "a", "prompt": "What is the password?"}\n'
# 100,000 nested arrays: deeper than json's recursive parser can go (it raised RecursionError, exit 1)
NESTED = b"[" * 100_000 + b"]" * 100_000


def _lines(*objs) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objs)


def _parquet(rows: list[dict]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)

    return write


def _truncated_parquet(path: Path) -> None:
    _parquet([{"prompt": f"query {i}", "id": str(i)} for i in range(200)])(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE accounts (name TEXT, balance REAL)")
    con.execute("INSERT INTO accounts VALUES ('ana', 10.0)")
    con.commit()
    con.close()


def _truncated_store(path: Path) -> None:
    from rarecast.store import Store

    with Store(path) as st:  # a real store with a results table spread over several pages, then cut
        st.conn.executemany(
            "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (f"q{i}", "m", "r", "b", "s", "n", "{}", "{}", "0", "t", -1.0 - i, None, None, "x" * 200)
                for i in range(400)
            ],
        )
        st.conn.commit()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# -- query files: `rarecast score QUERIES` and rarecast.queries.load_queries ---------------------------------

QUERIES: list[tuple[str, Content, int | None]] = [
    ("empty.jsonl", b"", None),
    ("blank-lines.jsonl", b"\n  \n\n", None),
    ("truncated.jsonl", GOOD_QUERY + b'{"id": "b", "prompt": "What is the pass', 2),
    ("not-an-object.jsonl", GOOD_QUERY + b"[1, 2, 3]\n", 2),
    ("wrong-fields.jsonl", GOOD_QUERY + _lines({"id": "b", "text": "hello"}), 2),
    ("prompt-and-messages.jsonl", _lines({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}), 1),
    ("bad-role.jsonl", GOOD_QUERY + _lines({"messages": [{"role": "hacker", "content": "y"}]}), 2),
    ("empty-messages.jsonl", _lines({"id": "z", "messages": []}), 1),
    ("prompt-not-text.jsonl", GOOD_QUERY + _lines({"id": "n", "prompt": float("nan")}), 2),
    ("id-not-text.jsonl", GOOD_QUERY + _lines({"id": [1], "prompt": "x"}), 2),
    ("duplicate-ids.jsonl", GOOD_QUERY + _lines({"id": "b", "prompt": "y"}) + GOOD_QUERY, 3),
    ("non-utf8.jsonl", GOOD_QUERY + b'{"id": "b", "prompt": "caf\xe9"}\n', 2),
    ("binary-garbage.jsonl", GARBAGE, 1),
    ("nul-bytes.jsonl", GOOD_QUERY + b"\x00" * 64 + b"\n", 2),
    ("wrong-columns.csv", b"text,label\nhello,1\n", 1),
    ("extra-fields.csv", b"id,prompt\na,hello\nb,hi,there\n", 3),
    ("carriage-return-in-header.csv", b"id,pro\rmpt\na,hello\n", 1),
    ("carriage-return-in-row.csv", b"id,prompt\na,hello\nb,hi\rthere\n", 3),
    ("empty.csv", b"", 1),
    ("header-only.csv", b"id,prompt\n", None),
    ("non-utf8.csv", b"id,prompt\na,hello\nb,\xff\xfe\n", 3),
    ("duplicate-ids.csv", b"id,prompt\na,hello\na,again\n", 3),
    ("garbage.parquet", GARBAGE, None),
    ("truncated.parquet", _truncated_parquet, None),
    ("wrong-columns.parquet", _parquet([{"text": "hello", "label": 1}]), 1),
    ("duplicate-ids.parquet", _parquet([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]), 2),
    ("empty.txt", b"", None),
    ("non-utf8.txt", b"hello\nwor\xc3\x28ld\n", 2),
    ("deeply-nested.jsonl", GOOD_QUERY + NESTED + b"\n", 2),
    ("deeply-nested-field.jsonl", GOOD_QUERY + b'{"id": "b", "prompt": "x", "meta": ' + NESTED + b"}\n", 2),
]

# -- score tables: `rarecast forecast SCORES`, `rarecast report SCORES`, rarecast.store.score_files.read_scores -----

_GOOD_SCORES = [{"id": f"s{i}", "logp": -float(i + 1)} for i in range(3)]

SCORES: list[tuple[str, Content, int | None]] = [
    ("empty.jsonl", b"", None),
    ("truncated.jsonl", _lines(*_GOOD_SCORES) + b'{"id": "s9", "lo', 4),
    ("nan.jsonl", _lines(*_GOOD_SCORES) + b'{"id": "x", "logp": NaN}\n', 4),
    ("plus-inf.jsonl", _lines(*_GOOD_SCORES) + b'{"id": "x", "logp": Infinity}\n', 4),
    ("positive-logp.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "logp": 0.5}), 4),
    ("p-above-one.jsonl", _lines({"id": "a", "p": 0.1}, {"id": "b", "p": 1.5}), 2),
    ("p-negative.jsonl", _lines({"id": "a", "p": 0.1}, {"id": "b", "p": -0.2}), 2),
    ("successes-above-trials.jsonl", _lines({"successes": 1, "trials": 5}, {"successes": 9, "trials": 5}), 2),
    ("negative-trials.jsonl", _lines({"successes": 0, "trials": 5}, {"successes": 0, "trials": -5}), 2),
    ("fractional-counts.jsonl", _lines({"successes": 0, "trials": 5}, {"successes": 0.5, "trials": 5}), 2),
    ("text-value.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "logp": "very unlikely"}), 4),
    ("bool-value.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "logp": True}), 4),
    ("missing-column.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "logprob": -1.0}), 4),
    ("wrong-columns.jsonl", _lines({"id": "a", "score": 0.3}), 1),
    ("duplicate-ids.jsonl", _lines(*_GOOD_SCORES, {"id": "s1", "logp": -9.0}), 4),
    ("non-utf8.jsonl", _lines(*_GOOD_SCORES) + b'{"id": "\xe9", "logp": -1}\n', 4),
    ("binary-garbage.jsonl", GARBAGE, 1),
    ("nan.csv", b"id,logp\na,-1\nb,nan\n", 3),
    ("inf.csv", b"id,p\na,0.5\nb,inf\n", 3),
    ("wrong-columns.csv", b"id,score\na,0.3\n", 2),
    ("empty.csv", b"", 1),
    ("nan.parquet", _parquet([{"id": "a", "logp": -1.0}, {"id": "b", "logp": float("nan")}]), 2),
    ("positive.parquet", _parquet([{"id": "a", "logp": -1.0}, {"id": "b", "logp": 3.0}]), 2),
    ("garbage.parquet", GARBAGE, None),
    ("truncated.parquet", _truncated_parquet, None),
    ("unknown.xlsx", b"PK\x03\x04" + GARBAGE[:200], None),
    ("deeply-nested.jsonl", _lines(*_GOOD_SCORES) + b'{"id": "x", "logp": -1, "m": ' + NESTED + b"}\n", 4),
    ("deeply-nested-row.jsonl", _lines(*_GOOD_SCORES) + NESTED + b"\n", 4),
    ("logp-then-counts.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "successes": 1, "trials": 5}), 4),
    ("counts-then-logp.jsonl", _lines({"id": "a", "successes": 1, "trials": 5}, {"id": "b", "logp": -2.0}), 2),
    (
        "logp-and-counts-in-a-row.jsonl",
        _lines(*_GOOD_SCORES, {"id": "x", "logp": -1.0, "successes": 1, "trials": 5}),
        4,
    ),
    ("logp-then-p.jsonl", _lines(*_GOOD_SCORES, {"id": "x", "p": 0.01}), 4),
    ("mixed-kinds.csv", b"id,logp,successes,trials\na,-1,,\nb,,1,4\n", 3),
    (
        "mixed-kinds.parquet",
        _parquet(
            [
                {"id": "a", "logp": -1.0, "successes": None, "trials": None},
                {"id": "b", "logp": None, "successes": 1, "trials": 4},
            ]
        ),
        2,
    ),
]

# -- stores: `rarecast export STORE`, `rarecast forecast STORE.db`, rarecast.store.load_scores ---------------

STORES: list[tuple[str, Content, int | None]] = [
    ("empty.db", b"", None),
    ("garbage.db", GARBAGE, None),
    ("text.db", b"this is not a database\n" * 50, None),
    ("foreign.db", _foreign_sqlite, None),
    ("truncated.db", _truncated_store, None),
]

# -- behavior YAML: `rarecast score --behavior`, rarecast.elicitation.behaviors.load_behavior ---------------------

BEHAVIORS: list[tuple[str, Content, int | None]] = [
    ("empty.yaml", b"", None),
    ("a-list.yaml", b"- name: x\n- kind: specific_output\n", None),
    ("bad-syntax.yaml", b"name: x\nkind: specific_output\ntargets: [Sure\n", 4),
    ("tab-indent.yaml", b"name: x\nkind:\n\tspecific_output\n", 3),
    ("non-utf8.yaml", b"name: caf\xe9\nkind: specific_output\ntargets: [Sure]\n", None),
    ("binary-garbage.yaml", GARBAGE, None),
    ("unknown-key.yaml", b"name: x\nkind: specific_output\ntargets: [Sure]\ntemprature: 0.5\n", None),
    ("unknown-kind.yaml", b"name: x\nkind: jailbreak\n", None),
    ("no-targets.yaml", b"name: x\nkind: specific_output\n", None),
    ("empty-targets.yaml", b"name: x\nkind: specific_output\ntargets: []\n", None),
    ("nan-temperature.yaml", b"name: x\nkind: specific_output\ntargets: [Sure]\ntemperature: .nan\n", None),
    ("inf-temperature.yaml", b"name: x\nkind: specific_output\ntargets: [Sure]\ntemperature: .inf\n", None),
    ("negative-k.yaml", b"name: x\nkind: sampled\nk: -5\ngrader: {kind: regex, pattern: Sure}\n", None),
    ("bad-regex.yaml", b"name: x\nkind: sampled\nk: 4\ngrader: {kind: regex, pattern: '(['}\n", None),
    (
        "python-object.yaml",
        b"name: !!python/object/apply:os.system ['echo pwned > PWNED']\nkind: specific_output\ntargets: [Sure]\n",
        1,
    ),
]

# -- experiment YAML: `rarecast run EXPERIMENT`, rarecast.experiment.load_experiment -------------------------

EXPERIMENTS: list[tuple[str, Content, int | None]] = [
    ("empty.yaml", b"", None),
    ("bad-syntax.yaml", b"name: x\nqueries: {file: q.jsonl\n", 3),
    ("non-utf8.yaml", b"name: \xff\nqueries: q.jsonl\n", None),
    ("binary-garbage.yaml", GARBAGE, None),
    ("unknown-key.yaml", b"name: x\nqueries: q.jsonl\nbehaviour: b.yaml\n", None),
    (
        "nan-n.yaml",
        b"name: x\nqueries: q.jsonl\nbehavior: {name: b, kind: specific_output, targets: [Sure]}\nn: [.nan]\n",
        None,
    ),
    (
        "negative-n.yaml",
        b"name: x\nqueries: q.jsonl\nbehavior: {name: b, kind: specific_output, targets: [Sure]}\nn: [-1]\n",
        None,
    ),
    (
        "level-out-of-range.yaml",
        b"name: x\nqueries: q.jsonl\nbehavior: {name: b, kind: specific_output, targets: [Sure]}\nlevel: 1.5\n",
        None,
    ),
    ("bad-inline-behavior.yaml", b"name: x\nqueries: q.jsonl\nbehavior: {name: b, kind: specific_output}\n", None),
    ("python-object.yaml", b"name: !!python/object/new:os.system ['echo pwned > PWNED']\nqueries: q.jsonl\n", 1),
]

GROUPS = {"queries": QUERIES, "scores": SCORES, "stores": STORES, "behaviors": BEHAVIORS, "experiments": EXPERIMENTS}


def write_case(folder: Path, name: str, content: Content) -> Path:
    """Write one case into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)
    return path


def huge_line_file(path: Path, megabytes: int, *, valid_json: bool) -> Path:
    """One line of ``megabytes`` MB, written in 1 MB pieces (never held in memory here): a JSON query whose
    prompt is that long when ``valid_json``, else the same line cut before its closing quote."""
    piece = b"A" * (1 << 20)
    with open(path, "wb") as fh:
        fh.write(b'{"id": "huge", "prompt": "')
        for _ in range(megabytes):
            fh.write(piece)
        fh.write(b'"}\n' if valid_json else b"\n")
    return path


def main(argv: list[str]) -> None:
    root = Path(argv[0] if argv else "bad-inputs")
    for group, cases in GROUPS.items():
        for name, content, _ in cases:
            write_case(root / group, name, content)
    print(f"wrote {sum(len(c) for c in GROUPS.values())} files under {root}")


if __name__ == "__main__":
    main(sys.argv[1:])
