"""GPU check for the hf backend's scoring computation: CUDA vs CPU agreement, tokens/s and model FLOP use.

Runs where only torch and transformers are installed and no weights can be brought: it builds randomly
initialized Llama models of the embedded model's shape (SmolLM2-135M, numbers copied from the cached
config in ~/.cache/rarecast/models/) and of a ~1B shape (Llama-3.2-1B's), and scores random token rows the way
rarecast's hf backend does: the decoder body over the rows, math SDPA attention, the LM head in fp32 only at
the scored positions, log-softmax in fp32. It reports

* the largest |log p| difference between CUDA and CPU (fp32 body), and the shift of a bf16 body;
* tokens/s on CUDA for fp32 and bf16 bodies, and model FLOP utilization: useful model FLOP/s over the
  measured dense matmul FLOP/s of the same dtype (and over the card's nominal dense peak when known).

    python scripts/gpu_check.py                    # on a CUDA machine: both models, full check
    python scripts/gpu_check.py --cpu-only --configs smollm2-135m   # what runs without a GPU

It is self-contained (no rarecast import) because the GPU machines hold torch and transformers only; the
FLOP count is the one benchmarks/scoring_throughput.py uses.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import LlamaConfig, LlamaForCausalLM

# The embedded model's architecture, from ~/.cache/rarecast/models/<sha>/config.json (SmolLM2-135M-Instruct).
SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    hidden_act="silu",
)
# A ~1.2B model of Llama-3.2-1B's shape.
LLAMA_1B = dict(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,
    tie_word_embeddings=True,
    hidden_act="silu",
)
CONFIGS = {"smollm2-135m": SMOLLM2_135M, "llama-1b": LLAMA_1B}
# Nominal dense peaks (FLOP/s) by device name: fp32 without tensor cores, bf16 with.
NOMINAL_PEAK = {
    "H100": {"fp32": 67e12, "bf16": 989e12},
    "H200": {"fp32": 67e12, "bf16": 989e12},
    "A100": {"fp32": 19.5e12, "bf16": 312e12},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(name: str) -> LlamaForCausalLM:
    """A randomly initialized model of the named shape, fp32 on CPU (seeded: the same weights every run)."""
    torch.manual_seed(0)
    config = LlamaConfig(**CONFIGS[name])
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


def make_rows(vocab: int, rows: int, length: int, scored: int, seed: int = 1):
    """Random token rows and the last ``scored`` positions of each as (flat index, next token) targets."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, length), generator=g)
    pos = torch.arange(length - scored - 1, length - 1)
    where = (torch.arange(rows)[:, None] * length + pos[None, :]).reshape(-1)
    tokens = ids[:, pos + 1].reshape(-1)
    return ids, where, tokens


def score(model, head: torch.Tensor, ids, where, tokens) -> torch.Tensor:
    """log p of each target token: body over the rows, fp32 head and log-softmax at target positions only."""
    device = head.device
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        hidden = model.model(input_ids=ids.to(device), use_cache=False).last_hidden_state
        picked = hidden.reshape(-1, hidden.shape[-1])[where.to(device)].float()
        logp = torch.log_softmax(picked @ head.T, dim=-1)
        return logp.gather(1, tokens.to(device)[:, None])[:, 0].double().cpu()


def on_device(cpu_model, device: str, dtype: str):
    """A copy of the model on ``device`` with its body in ``dtype``, and an fp32 copy of its head there."""
    import copy

    model = copy.deepcopy(cpu_model).to(device)
    head = model.lm_head.weight.detach().float().clone()
    return model.to(DTYPES[dtype]), head


def model_flops(config, rows: int, length: int, scored: int) -> float:
    """Useful FLOPs: linear layers for every token, causal attention, the head at scored positions."""
    d, ff, layers, heads = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.num_attention_heads,
    )
    hd = config.head_dim
    kv = config.num_key_value_heads * hd
    linear = 2 * layers * (d * heads * hd * 2 + 2 * d * kv + 3 * d * ff)
    attention = 4 * layers * heads * hd * length * (length + 1) / 2
    return rows * (linear * length + attention + 2 * d * config.vocab_size * scored)


def timed(fn, device: str, reps: int = 3) -> float:
    """Best-of-``reps`` seconds of ``fn()`` (after one warm-up), synchronizing CUDA around it."""
    fn()
    best = float("inf")
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_flops(device: str, dtype: str, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    return 2 * n**3 / timed(lambda: a @ b, device)


def check(name: str, device: str, rows: int, length: int, scored: int, ref_rows: int) -> dict:
    """Agreement with the CPU fp32 reference on ``ref_rows`` rows, then throughput on ``device``."""
    cpu_model = build(name)
    config = cpu_model.config
    ids, where, tokens = make_rows(config.vocab_size, rows, length, scored)
    sub = ref_rows * scored  # targets of the first ref_rows rows
    ref = score(cpu_model, cpu_model.lm_head.weight.detach().float(), ids[:ref_rows], where[:sub], tokens[:sub])
    out = {
        "model": name,
        "parameters": sum(p.numel() for p in cpu_model.parameters()),
        "device": device,
        "rows": rows,
        "length": length,
        "scored_per_row": scored,
    }
    for dtype in ("fp32", "bf16"):
        model, head = on_device(cpu_model, device, dtype)
        got = score(model, head, ids[:ref_rows], where[:sub], tokens[:sub])
        out[f"{dtype}_max_abs_diff_vs_cpu_fp32_nats"] = float((got - ref).abs().max())
        seconds = timed(lambda model=model, head=head: score(model, head, ids, where, tokens), device)
        flops = model_flops(config, rows, length, scored) / seconds
        peak = matmul_flops(device, dtype, 8192 if device == "cuda" else 1024)
        out[f"{dtype}_tokens_per_s"] = rows * length / seconds
        out[f"{dtype}_model_tflops"] = flops / 1e12
        out[f"{dtype}_matmul_tflops"] = peak / 1e12
        out[f"{dtype}_mfu_vs_measured_matmul"] = flops / peak
        nominal = _nominal(device, dtype)
        if nominal:
            out[f"{dtype}_mfu_vs_nominal_peak"] = flops / nominal
        del model, head
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def _nominal(device: str, dtype: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((p[dtype] for key, p in NOMINAL_PEAK.items() if key in name), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-only", action="store_true", help="no GPU: run the same steps on the CPU (small sizes)")
    ap.add_argument("--configs", default="smollm2-135m,llama-1b", help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max |log p| difference CUDA vs CPU, fp32")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    if not args.cpu_only and not torch.cuda.is_available():
        ap.error("no CUDA device; run with --cpu-only to exercise the script on a CPU")
    device = "cpu" if args.cpu_only else "cuda"
    rows, length, scored, ref_rows = (4, 64, 4, 2) if args.cpu_only else (64, 512, 8, 8)
    results = [check(name, device, rows, length, scored, ref_rows) for name in args.configs.split(",")]
    for r in results:
        print(json.dumps(r, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"torch": torch.__version__, "results": results}, fh, indent=2)
    worst = max(r["fp32_max_abs_diff_vs_cpu_fp32_nats"] for r in results)
    print(
        f"fp32 {device} vs CPU: max |diff| {worst:.2e} nats (tolerance {args.tolerance:g}): "
        f"{'OK' if worst <= args.tolerance else 'FAILED'}"
    )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
