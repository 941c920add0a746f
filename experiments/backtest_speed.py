"""How long ``rarecast backtest`` takes: 500 trials x m in {100, 300, 1000} x n in {1e4, 3e4, 9e4} on a
100k pool (synthetic exponential tail), per method, with intervals (100 draws per trial) and without.

Both wall-clock and CPU seconds (``time.process_time``) are recorded: on a shared machine the wall clock
measures the other tenants as much as the code.

    .venv/bin/python experiments/backtest_speed.py     # writes results/backtest_speed.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_result

from rarecast.evaluation.backtest import backtest
from rarecast.evaluation.synthetic import FAMILIES
from rarecast.scores import logp_from_psi

CHEAP = ["gumbel-ols", "lognormal", "exponential", "gpd"]
LOOPED = {"gpd-bayes": 50}  # trials actually run for the looped estimator; scaled to 500 in the report


def main() -> None:
    info = machine()
    pool = logp_from_psi(FAMILIES["exponential"].sample_psi(np.random.default_rng(0), 100_000))
    grid = dict(m=[100, 300, 1000], n=[1e4, 3e4, 9e4], tau=1e-3)
    out = {"machine": info, "pool": len(pool), "trials": 500, **grid, "wall_s": {}, "cpu_s": {}}
    runs = [(m, 500, d) for d in (0, 100) for m in CHEAP] + [(m, t, 100) for m, t in LOOPED.items()]
    for method, trials, draws in runs:  # one call per method, so its CPU time includes the splits
        label = f"{method}, {trials} trials, draws={draws}"
        wall, cpu = time.perf_counter(), time.process_time()
        backtest(pool, [method], trials=trials, n_draws=draws, **grid)
        out["wall_s"][label], out["cpu_s"][label] = time.perf_counter() - wall, time.process_time() - cpu
    print(write_result("backtest_speed", out).read_text())


if __name__ == "__main__":
    main()
