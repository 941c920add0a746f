"""Scoring throughput of the hf backend on the embedded SmolLM2-135M, against a naive loop and the machine.

In one run:

* naive: one query at a time, a full ``model(ids).logits`` (logits at every position), log-softmax, gather;
* the hf backend (fp32, and bf16 with an fp32 head): token-budget batches, logits only at target positions;
* the same backend scoring 4 targets per query in one packed prompt pass vs one call per target;
* a shared-prefix workload (system prompts x questions, every query with one of a few long system prompts),
  fp32 and bf16, with prefix reuse (the prefix runs once into a KV cache) and without;
* dense fp32 (and bf16) ``torch.matmul`` FLOP/s on large square matrices, as the machine's ceiling;
* a float64 copy of the model on the naive loop's queries, as the yardstick for the fp32 paths' rounding.

Every rate counts the same unit on both sides: *query tokens* (prompt + target tokens of the queries scored),
whatever the backend actually ran (prefix reuse runs fewer). Reported: ``speedup_vs_naive`` (backend fp32
query tokens/s over the naive loop's, tokenization included on both sides; ``speedup_vs_naive_bf16`` the same
for the bf16 body), ``matmul_fraction`` / ``matmul_fraction_fp32`` (the model FLOPs the backend actually ran,
per second, over the machine's measured dense fp32 matmul FLOP/s; bf16 rows against bf16 matmul),
``speedup_ceiling_fp32`` (the speedup a backend running exactly those FLOPs at the measured matmul rate would
reach: the bound this machine puts on ``speedup_vs_naive``) and ``prefix_speedup`` (fp32 seconds without prefix
reuse over seconds with it, same queries, same backend). Model FLOPs count the linear layers for every token
run, causal attention (QK and PV) for the keys each token sees (cached prefix keys included), and the LM head
only where it is applied.

    python benchmarks/scoring_throughput.py --quick --out scoring.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from rarecast.backends import get_backend
from rarecast.backends.hf import continuation_ids, encode, render_prompt
from rarecast.queries import Query

WORDS = (
    "the model should explain how a small river finds its way to the sea while people watch "
    "from old bridges and write letters about weather trade music rules stars and bread"
).split()
TARGET = "Sure, here is"
MULTI = ["Sure, here is", "I cannot", "Of course", "No"]


def make_prefix_queries(n_prompts: int, n_questions: int, seed: int = 1) -> list[Query]:
    """Every question under every system prompt: prompts of 90-110 words, questions of 6-12 words."""
    rng = np.random.default_rng(seed)
    systems = [" ".join(rng.choice(WORDS, size=int(rng.integers(90, 111)))) + "." for _ in range(n_prompts)]
    questions = [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 13)))) + "?" for _ in range(n_questions)]
    return [
        Query(id=f"s{i}q{j}", messages=({"role": "system", "content": sp}, {"role": "user", "content": qu}))
        for i, sp in enumerate(systems)
        for j, qu in enumerate(questions)
    ]


def make_queries(n: int, seed: int = 0) -> list[Query]:
    """Deterministic prompts of 12-30 words (about 45-65 tokens with the chat template)."""
    rng = np.random.default_rng(seed)
    return [
        Query(id=f"q{i}", prompt=" ".join(rng.choice(WORDS, size=int(rng.integers(12, 31)))) + "?") for i in range(n)
    ]


def matmul_flops(dtype: torch.dtype, reps: int = 5) -> float:
    """The machine's dense matmul FLOP/s: best of ``reps`` over square 2048 products and the embedded model's
    MLP shape (2048 tokens x 576 -> 1536), whichever is faster, so the ceiling is never set by one bad shape."""
    shapes = [(2048, 2048, 2048), (2048, 576, 1536)]
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)  # warm-up
        best = max(best, 2 * m * k * n / min(_timed(lambda a=a, b=b: torch.matmul(a, b)) for _ in range(reps)))
    return best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_flops(config, rows: list[tuple[int, int]], cached: int = 0) -> float:
    """Model FLOPs of running rows given as (input tokens, positions read through the head).

    ``cached``: keys every row's tokens also attend to (a prefix in the KV cache, not recomputed).
    """
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    kv = config.num_key_value_heads * head_dim
    linear = 2 * layers * (d * heads * head_dim * 2 + 2 * d * kv + 3 * d * ff)  # q, o, k, v, MLP
    total = 0.0
    for length, heads_read in rows:
        seen = length * (length + 1) / 2 + length * cached  # causal: token i attends to i + 1 (+ cached) keys
        total += linear * length + 4 * layers * heads * head_dim * seen + 2 * d * config.vocab_size * heads_read
    return total


def executed_flops(backend, queries, targets) -> float:
    """The model FLOPs the backend runs for ``queries``: each shared prefix once, then every row's rest."""
    from rarecast.backends.hf import prefix_groups

    rows = [backend._pack(i, q, targets) for i, q in enumerate(queries)]
    groups = prefix_groups(rows) if backend.prefix_reuse else [(0, rows)]
    config = backend.model.config
    flops = 0.0
    for shared, members in groups:
        flops += model_flops(config, [(shared, 0)]) if shared else 0.0
        flops += model_flops(config, [(len(r.input_ids) - shared, len(r.targets)) for r in members], cached=shared)
    return flops


def query_tokens(backend, queries, target) -> int:
    return sum(len(p) + len(c) for p, c in token_rows(backend, queries, target))


def token_rows(backend, queries, target):
    """(prompt + target tokens, target tokens) per query, with the backend's own boundary handling."""
    tok = backend.tokenizer
    out = []
    for q in queries:
        text = render_prompt(tok, q)
        p = encode(tok, text)
        c = continuation_ids(tok, text, p, target)
        out.append((p, c))
    return out


def naive(backend, queries, target) -> dict:
    """One query at a time; logits for every position, as a first script would do it (tokenizing included)."""
    model = backend.model
    start = time.perf_counter()
    pairs = token_rows(backend, queries, target)
    values = one_at_a_time(model, pairs, torch.float32)
    seconds = time.perf_counter() - start
    lengths = [len(p) + len(c) for p, c in pairs]
    flops = model_flops(model.config, [(n, n) for n in lengths])  # the head runs at every position
    tokens = sum(lengths)
    return {
        "seconds": seconds,
        "query_tokens_per_s": tokens / seconds,
        "flops_per_s": flops / seconds,
        "values": values,
    }


def one_at_a_time(model, pairs, dtype: torch.dtype) -> list[float]:
    """log p of each (prompt, target) pair from a full forward pass, logits and log-softmax in ``dtype``."""
    values = []
    with torch.inference_mode():
        for p, c in pairs:
            logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].to(dtype), dim=-1)
            values.append(float(sum(logp[len(p) - 1 + i, t] for i, t in enumerate(c))))
    return values


def fp64_reference(backend, queries, target) -> np.ndarray:
    """log p of ``target`` per query from a float64 copy of the model: the yardstick for fp32 rounding."""
    import copy

    model = copy.deepcopy(backend.model).double()
    return np.array(one_at_a_time(model, token_rows(backend, queries, target), torch.float64))


def backend_run(backend, queries, targets) -> dict:
    """Score ``queries`` once (after a warm-up); rates in query tokens and in FLOPs actually run."""
    backend.continuation_logprobs(queries[:4], targets)  # warm-up (first-call allocations)
    before = backend.tokens_processed
    start = time.perf_counter()
    values = backend.continuation_logprobs(queries, targets)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "values": values,
        "query_tokens_per_s": query_tokens(backend, queries, targets[0]) / seconds,
        "tokens_run_per_s": (backend.tokens_processed - before) / seconds,
        "flops_per_s": executed_flops(backend, queries, targets) / seconds,
    }


def prefix_rows(backends: dict, queries) -> dict:
    """fp32 and bf16, with and without reuse: seconds, query tokens/s, model GFLOP/s; and the speedups."""
    out = {"prefix_queries": len(queries)}
    for name, backend in backends.items():
        runs = {}
        for reuse in (False, True):
            backend.prefix_reuse = reuse
            runs[reuse] = backend_run(backend, queries, [TARGET])
        backend.prefix_reuse = True
        for reuse, r in runs.items():
            tag = f"prefix_{name}_{'reuse' if reuse else 'no_reuse'}"
            out[f"{tag}_seconds"] = r["seconds"]
            out[f"{tag}_query_tokens_per_s"] = r["query_tokens_per_s"]
            out[f"{tag}_model_gflops"] = r["flops_per_s"] / 1e9
        out[f"prefix_{name}_speedup"] = runs[False]["seconds"] / runs[True]["seconds"]
        out[f"prefix_{name}_reuse_max_abs_diff_nats"] = float(
            np.max(np.abs(runs[True]["values"] - runs[False]["values"]))
        )
    out["prefix_speedup"] = out["prefix_fp32_speedup"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    ap.add_argument("--out", help="write the figures as one JSON object")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        help="torch threads; 1 on an oversubscribed machine, where every "
        "small op of a multi-threaded run waits for a descheduled thread at its barrier",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_naive, n_backend, n_multi = (24, 192, 48) if args.quick else (64, 768, 192)
    n_prompts, n_questions = (4, 24) if args.quick else (50, 200)

    load0 = os.getloadavg()[0]
    mm32 = matmul_flops(torch.float32)
    mm16 = matmul_flops(torch.bfloat16)
    fp32 = get_backend("hf:smollm2", device=args.device)
    queries = make_queries(n_backend)

    nv = naive(fp32, queries[:n_naive], TARGET)
    bk = backend_run(fp32, queries, [TARGET])
    agree = float(np.max(np.abs(bk["values"][:n_naive, 0] - np.array(nv["values"]))))
    exact = fp64_reference(fp32, queries[:n_naive], TARGET)

    packed = _timed(lambda: fp32.continuation_logprobs(queries[:n_multi], MULTI))
    separate = _timed(lambda: [fp32.continuation_logprobs(queries[:n_multi], [t]) for t in MULTI])

    bf16 = get_backend("hf:smollm2", dtype="bf16", device=args.device)
    bb = backend_run(bf16, queries, [TARGET])
    bf16_shift = float(np.max(np.abs(bb["values"] - bk["values"])))
    prefix = prefix_rows({"fp32": fp32, "bf16": bf16}, make_prefix_queries(n_prompts, n_questions))

    # The machine's ceiling is the best matmul rate seen at the start or the end: on a shared machine one
    # measurement can land in a busy moment and make the fractions exceed 1.
    mm32, mm16 = max(mm32, matmul_flops(torch.float32)), max(mm16, matmul_flops(torch.bfloat16))
    for key in [k for k in prefix if k.endswith("_model_gflops")]:
        prefix[key.replace("_model_gflops", "_matmul_fraction")] = prefix[key] * 1e9 / (mm32 if "fp32" in key else mm16)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        "load_average_at_start": load0,
        "queries_backend": n_backend,
        "queries_naive": n_naive,
        "matmul_fp32_gflops": mm32 / 1e9,
        "matmul_bf16_gflops": mm16 / 1e9,
        "naive_query_tokens_per_s": nv["query_tokens_per_s"],
        "naive_model_gflops": nv["flops_per_s"] / 1e9,
        "backend_fp32_query_tokens_per_s": bk["query_tokens_per_s"],
        "backend_fp32_tokens_run_per_s": bk["tokens_run_per_s"],
        "backend_fp32_queries_per_s": n_backend / bk["seconds"],
        "backend_fp32_model_gflops": bk["flops_per_s"] / 1e9,
        "backend_bf16_query_tokens_per_s": bb["query_tokens_per_s"],
        "backend_bf16_model_gflops": bb["flops_per_s"] / 1e9,
        "speedup_vs_naive": bk["query_tokens_per_s"] / nv["query_tokens_per_s"],
        "speedup_vs_naive_bf16": bb["query_tokens_per_s"] / nv["query_tokens_per_s"],
        # Running the same FLOPs at the matmul ceiling would divide the backend's time by matmul_fraction.
        "speedup_ceiling_fp32": bk["query_tokens_per_s"] / nv["query_tokens_per_s"] * mm32 / bk["flops_per_s"],
        "matmul_fraction": bk["flops_per_s"] / mm32,
        "matmul_fraction_fp32": bk["flops_per_s"] / mm32,
        "naive_matmul_fraction_fp32": nv["flops_per_s"] / mm32,
        "bf16_matmul_fraction_of_bf16_matmul": bb["flops_per_s"] / mm16,
        "max_abs_diff_backend_vs_naive_nats": agree,
        "max_abs_diff_backend_vs_fp64_nats": float(np.max(np.abs(bk["values"][:n_naive, 0] - exact))),
        "max_abs_diff_naive_vs_fp64_nats": float(np.max(np.abs(np.array(nv["values"]) - exact))),
        "max_abs_shift_bf16_vs_fp32_nats": bf16_shift,
        "four_targets_packed_seconds": packed,
        "four_targets_separate_seconds": separate,
        "packed_speedup_vs_separate": separate / packed,
        **prefix,
        "load_average_at_end": os.getloadavg()[0],
    }
    _print_table(result)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


def _print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"scoring throughput: SmolLM2-135M ({r['machine']})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in r.items():
        if k != "machine":
            t.add_row(k, f"{v:,.4g}" if isinstance(v, float) else str(v))
    Console().print(t)


if __name__ == "__main__":
    main()
