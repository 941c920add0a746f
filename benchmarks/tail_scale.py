"""The tail scale sigma of psi in every committed real pool: the evidence behind binomial's prior on it.

Exact log-probabilities measure sigma well, counts with a few successes per query do not, so the count fit
borrows a prior from the exact pools. For each real pool and evaluation size m (100, 300, 1,000 where the pool
holds twice as many), 20 random evaluation samples are fitted with the default gpd-bayes; the line gives the
median and the 10% and 90% points of its posterior-mode sigma and xi, and the p of its threshold.

    .venv/bin/python benchmarks/tail_scale.py > docs/tail-scale.log
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # noqa: E402

import rarecast as rc  # noqa: E402
from rarecast.scores import p_from_psi  # noqa: E402

SAMPLES = 20


def fitted(logp: np.ndarray, m: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(sigma, xi, threshold p) of gpd-bayes's posterior mode on m queries drawn without replacement."""
    model = rc.fit_tail(rng.choice(logp, m, replace=False), method="gpd-bayes").model
    return float(np.ravel(model.sigma)[0]), float(np.ravel(model.xi)[0]), float(p_from_psi(model.threshold[0]))


def main() -> None:
    print(f"machine: {fa.machine_name()}; {SAMPLES} evaluation samples per (pool, m); 10% / 50% / 90% points")
    medians = []
    for name, logp in fa.real_pools().items():
        for m in (100, 300, 1000):
            if 2 * m > len(logp):
                continue
            rng = np.random.default_rng(m)
            sigma, xi, p_u = np.array([fitted(logp, m, rng) for _ in range(SAMPLES)]).T
            medians.append(np.median(sigma))
            s10, s50, s90 = np.percentile(sigma, [10, 50, 90])
            print(
                f"{name:22s} m={m:5d}  sigma {s10:.3f} / {s50:.3f} / {s90:.3f}   xi {np.median(xi):+.2f}"
                f"   threshold p {np.median(p_u):.1e}"
            )
    print(
        f"median sigma over pools and m: {np.min(medians):.3f} to {np.max(medians):.3f}, "
        f"geometric mean {np.exp(np.mean(np.log(medians))):.3f}"
    )


if __name__ == "__main__":
    main()
