"""``hf:<model>``: exact teacher-forced log-probabilities and sampling with a local transformers model.

Model strings: ``hf:smollm2`` (the embedded default, see :mod:`rarecast.backends.smollm2`), ``hf:<hub id>``
(read from the local Hugging Face cache) or ``hf:<local path>``.

How a query is scored (see docs/elicitation.md for the reasons):

* the query is rendered with the model's chat template and ``add_generation_prompt=True``; each continuation
  is tokenized so that prompt tokens stay exactly what the model sees at generation time (see
  :func:`continuation_ids`);
* all continuations of one query share one prompt pass: the prompt and a token trie of the continuations are
  packed into one row, with a 4-D attention mask that lets each trie node see the prompt and its own
  ancestors only, and position ids that restart after the prompt for every branch;
* queries whose prompts share a long token prefix (a system prompt, a jailbreak template) are grouped; the
  prefix runs once into a KV cache and only the suffixes run against it (see :func:`prefix_groups`); small
  groups with similar prefix lengths share their batches (see :func:`prefix_sets`);
* rows are sorted by length and grouped into batches under a token budget, right-padded, with explicit
  position ids;
* only the base model runs over the whole row; the LM head is applied to the hidden states at the positions
  whose next token is scored, and the log-softmax is taken in fp32 (also under ``dtype="bf16"``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rarecast.backends.base import SamplingSettings
from rarecast.backends.smollm2 import file_digest, load_gguf, load_smollm2, stay_offline
from rarecast.errors import InputError

if TYPE_CHECKING:  # backends take queries but never build them, so queries may import backends
    from rarecast.queries import Query

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16"}
# Token budget per forward pass. On a CPU, batches of ~2k tokens keep a layer's activations (2k x 1536 fp32 =
# 12 MB for SmolLM2's MLP) inside the last-level cache: 4096 ran the standard benchmark workload ~20% slower
# on the 2-core development machine (32 MB L3). A GPU wants far larger batches to fill its cores.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 16384}
# CPU GEMM kernels round differently below about a dozen rows (a GEMV path for one row, other blockings
# below 12), so every matrix product runs with at least this many rows: the LM head zero-pads its rows, and a
# batch is right-padded to at least this many token positions. Without it, a short suffix alone in a batch
# scored 2.3e-5 nats away from the same suffix in a larger batch.
MIN_GEMM_ROWS = 16
# The fixed cost of one forward pass, as a fraction of the token budget: ~30 layers x ~40 small ops cost about
# what 64 more tokens do on the development CPU at its 2048-token budget.
PASS_OVERHEAD = 1 / 32
# A shared prefix shorter than this is recomputed per row: below it, the extra prefix pass and cache copies
# cost about what they save.
MIN_PREFIX_TOKENS = 16
# Rows x (prefix + suffix) of one prefix-reuse batch stays within this multiple of the token budget: the
# prefix's KV cache is copied per row, and this bounds that memory (~0.4 GB for SmolLM2 at 2048 tokens). The
# prefix states of one set (see prefix_sets) stay within it too: they are held while the set is scored.
PREFIX_CACHE_FACTOR = 4


# ----------------------------------------------------------------------------------------------------------
# Tokenization


def chat_messages(query: Query) -> list[dict[str, str]]:
    """The chat a query stands for; a plain ``prompt`` is one user turn."""
    if query.messages is not None:
        return [dict(m) for m in query.messages]
    return [{"role": "user", "content": query.prompt or ""}]


def render_prompt(tokenizer, query: Query) -> str:
    """The text the model reads before its reply: the chat template with the generation prompt appended.

    Tokenizers without a chat template (base models) get the plain prompt text.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat_messages(query), tokenize=False, add_generation_prompt=True)
    if query.prompt is not None:
        return query.prompt
    return "\n".join(m["content"] for m in query.messages or ())


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text``; special tokens come from the rendered template, so none are added here."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def continuation_ids(tokenizer, prompt_text: str, prompt_ids: list[int], continuation: str) -> list[int]:
    """Token ids of ``continuation`` as a reply that follows ``prompt_ids``.

    The model generates its reply after the prompt tokens, which never change. When tokenizing the joined
    text reproduces the prompt tokens as a prefix (checked, not assumed), the rest is the continuation's
    in-context tokenization. When the boundary merges (e.g. a reply starting with a newline after a template
    that ends in one), the prompt tokens are kept and the continuation is tokenized on its own, which is what
    a generated reply with that text would be; it must decode back to the same text.
    """
    joined = encode(tokenizer, prompt_text + continuation)
    if joined[: len(prompt_ids)] == prompt_ids:
        return joined[len(prompt_ids) :]
    alone = encode(tokenizer, continuation)
    if tokenizer.decode(alone) != continuation:
        raise InputError(f"continuation {continuation!r} does not survive tokenization at the reply boundary")
    return alone


# ----------------------------------------------------------------------------------------------------------
# Packing: one row per query = prompt + trie of continuation prefixes


@dataclass
class PackedRow:
    """One query's model input: prompt tokens, then trie nodes of the continuations' proper prefixes."""

    query_index: int
    input_ids: list[int]
    position_ids: list[int]
    parent: list[int]  # per position: the position it extends (-1 for the first token)
    prompt_len: int
    # (position whose next-token distribution is read, token id, query index, continuation index)
    targets: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def branching(self) -> bool:
        """Whether any node extends something other than the position right before it."""
        return any(p != i - 1 for i, p in enumerate(self.parent))

    def tail(self, start: int) -> PackedRow:
        """The row without its first ``start`` prompt tokens (which a KV cache already holds).

        Position ids stay absolute; parents and target positions are shifted to the shorter row. Every
        target must read a position at or after ``start``.
        """
        if not 0 <= start < self.prompt_len:
            raise ValueError(
                f"a tail must keep at least the last prompt token (start {start}, prompt {self.prompt_len})"
            )
        return PackedRow(
            self.query_index,
            self.input_ids[start:],
            self.position_ids[start:],
            [max(p - start, -1) for p in self.parent[start:]],
            self.prompt_len - start,
            [(pos - start, tok, qi, ci) for pos, tok, qi, ci in self.targets],
        )


def pack_row(query_index: int, prompt_ids: list[int], conts: list[list[int]]) -> PackedRow:
    """Pack a prompt and its continuations so every shared prefix is computed once.

    The distribution of continuation token ``i`` comes from the position holding its prefix ``c[:i]``; the
    empty prefix is the last prompt token. The last token of a continuation is scored but never fed in.
    """
    if not prompt_ids:
        raise InputError("the rendered prompt is empty; the model needs at least one token to condition on")
    n = len(prompt_ids)
    row = PackedRow(query_index, list(prompt_ids), list(range(n)), list(range(-1, n - 1)), n)
    node: dict[tuple[int, ...], int] = {(): n - 1}
    for j, cont in enumerate(conts):
        for i, tok in enumerate(cont):
            prefix = tuple(cont[:i])
            if prefix not in node:
                node[prefix] = len(row.input_ids)
                row.input_ids.append(prefix[-1])
                row.position_ids.append(n - 1 + i)
                row.parent.append(node[prefix[:-1]])
            row.targets.append((node[prefix], tok, query_index, j))
    return row


def token_batches(rows: list[PackedRow], budget: int, max_rows: int | None = None) -> list[list[PackedRow]]:
    """Split rows, shortest first, into batches whose (rows) x (longest row) stays within ``budget`` tokens.

    Every batch is padded to its longest row, and every forward pass costs some fixed overhead (hundreds of
    small ops); the cuts between batches minimize padded tokens plus :data:`PASS_OVERHEAD` budgets' worth of
    tokens per batch (dynamic programming over the sorted rows). Filling each batch greedily instead padded
    17% of the tokens of a workload of 10- to 25-token rows; this pads 2%. A row longer than the budget gets
    a batch of its own. ``max_rows`` caps the rows of one batch (prefix reuse copies the cache per row).
    """
    order = sorted(rows, key=lambda r: len(r.input_ids))
    lengths = [len(r.input_ids) for r in order]
    per_pass = budget * PASS_OVERHEAD
    cost = [0.0] + [np.inf] * len(order)  # cost[j]: cheapest split of the first j rows
    start = [0] * (len(order) + 1)  # start[j]: where the last batch of that split starts
    for j in range(1, len(order) + 1):
        for i in range(j - 1, -1, -1):
            size = j - i
            if size > 1 and (size * lengths[j - 1] > budget or (max_rows is not None and size > max_rows)):
                break
            total = cost[i] + size * lengths[j - 1] + per_pass
            if total < cost[j]:
                cost[j], start[j] = total, i
    batches, j = [], len(order)
    while j > 0:
        batches.append(order[start[j] : j])
        j = start[j]
    return batches[::-1]


def padded_width(batch: list[PackedRow]) -> int:
    """Token positions per row of a batch: its longest row, and at least :data:`MIN_GEMM_ROWS` in all."""
    return max(max(len(r.input_ids) for r in batch), -(-MIN_GEMM_ROWS // len(batch)))


def prefix_groups(rows: list[PackedRow], min_prefix: int = MIN_PREFIX_TOKENS) -> list[tuple[int, list[PackedRow]]]:
    """Split rows into ``(shared prefix length, rows)`` groups whose prompts share their first tokens.

    Rows are sorted by prompt tokens, so prompts with a common start are neighbours; a run of neighbours
    becomes one group while adding the next row does not lower the tokens the group saves,
    (rows - 1) x prefix length. The prefix always leaves each row at least its last prompt token, because
    every score is read at or after that position. Rows without a partner sharing ``min_prefix`` tokens come
    back in one group with prefix length 0 (scored without reuse).
    """
    groups: list[tuple[int, list[PackedRow]]] = []
    alone: list[PackedRow] = []
    order = sorted(rows, key=lambda r: r.input_ids[: r.prompt_len])
    i = 0
    while i < len(order):
        members, shared = [order[i]], order[i].prompt_len - 1
        for row in order[i + 1 :]:
            common = min(_common_prefix(order[i], row), row.prompt_len - 1, shared)
            if common < min_prefix or len(members) * common < (len(members) - 1) * shared:
                break
            members.append(row)
            shared = common
        if len(members) > 1:
            groups.append((shared, members))
        else:
            alone.append(order[i])
        i += len(members)
    return groups + ([(0, alone)] if alone else [])


def _common_prefix(a: PackedRow, b: PackedRow) -> int:
    """Number of leading prompt tokens ``a`` and ``b`` share."""
    n = min(a.prompt_len, b.prompt_len)
    for j in range(n):
        if a.input_ids[j] != b.input_ids[j]:
            return j
    return n


def prefix_sets(
    groups: list[tuple[int, list[PackedRow]]], max_cache_tokens: int
) -> list[list[tuple[int, list[PackedRow]]]]:
    """Gather prefix groups (``shared > 0``) into sets whose rows are batched together.

    A group of 24 short suffixes fills a tenth of a batch; alone, it pays a whole forward pass of per-op
    overhead and pads every row to its longest. Groups are taken by prefix length, and a set grows while its
    longest prefix is at most twice its shortest (each row's cached keys are padded to the longest prefix of
    its batch, and attention runs over the padding) and while its held caches stay within
    ``max_cache_tokens`` token slots: every prefix of a set is stored with room for the longest suffix after
    the longest prefix (see :class:`rarecast.backends.ragged_cache.PrefixStates`). A set of one group is
    scored as before.
    """
    sets: list[list[tuple[int, list[PackedRow]]]] = []
    for group in sorted(groups, key=lambda g: g[0]):
        current = sets[-1] if sets else None
        if current and group[0] <= 2 * current[0][0] and _cache_slots(current + [group]) <= max_cache_tokens:
            current.append(group)
        else:
            sets.append([group])
    return sets


def _cache_slots(groups: list[tuple[int, list[PackedRow]]]) -> int:
    """Token slots a set's prefix states take: one row per group, longest prefix + longest suffix wide."""
    suffix = max(len(r.input_ids) - shared for shared, rows in groups for r in rows)
    return len(groups) * (max(shared for shared, _ in groups) + suffix)


def allowed_matrix(row: PackedRow) -> np.ndarray:
    """Boolean (L, L) matrix: position i may attend to position j.

    Prompt tokens attend causally; a trie node attends to the whole prompt and to its own chain of ancestors,
    never to sibling branches, so each continuation sees exactly prompt + its own prefix.
    """
    size = len(row.input_ids)
    allowed = np.zeros((size, size), dtype=bool)
    n = row.prompt_len
    allowed[:n, :n] = np.tril(np.ones((n, n), dtype=bool))
    for i in range(n, size):
        allowed[i, :n] = True
        allowed[i, n:] = allowed[row.parent[i], n:]
        allowed[i, i] = True
    return allowed


# ----------------------------------------------------------------------------------------------------------
# The backend


class HFBackend:
    """A transformers causal LM as a rarecast :class:`~rarecast.backends.base.Backend`."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        model_id: str,
        revision: str,
        dtype: str = "fp32",
        batch_tokens: int | None = None,
        prefix_reuse: bool = True,
    ):
        import torch

        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not one of fp32, bf16")
        self.model_id = model_id
        self.revision = revision
        self.dtype = "bf16" if DTYPES[dtype] == "bfloat16" else "fp32"
        self.device = next(model.parameters()).device
        self.batch_tokens = int(batch_tokens or DEFAULT_BATCH_TOKENS.get(self.device.type, DEFAULT_BATCH_TOKENS["cpu"]))
        # Reuse agrees with separate rows to float rounding (~1e-6 nats fp32), like batching, so it is not
        # part of the recorded settings.
        self.prefix_reuse = bool(prefix_reuse)
        self.tokenizer = tokenizer
        self.model = model.eval()
        # Keep an fp32 head even when the body runs in bf16: the log-softmax over 49k tokens is where bf16
        # rounding would shift log-probabilities the most.
        self.head_weight = model.get_output_embeddings().weight.detach().to(torch.float32).clone()
        if self.dtype == "bf16":
            self.model.to(torch.bfloat16)
        self.tokens_processed = 0

    # -- provenance ----------------------------------------------------------------------------------------

    def describe(self) -> dict:
        """Settings that change results, recorded with every row (precision, not batch size)."""
        return {"backend": "hf", "dtype": self.dtype}

    # -- exact log-probabilities -----------------------------------------------------------------------------

    def continuation_logprobs(
        self, queries: Sequence[Query], continuations: Sequence[str], *, temperature: float = 1.0
    ) -> np.ndarray:
        """Log-probability that the reply to each query starts with each continuation, shape (n_q, n_c)."""
        if temperature <= 0:
            raise InputError("exact log-probabilities need a temperature > 0")
        out = np.zeros((len(queries), len(continuations)), dtype=np.float64)
        rows = [self._pack(i, q, continuations) for i, q in enumerate(queries)]
        groups = prefix_groups(rows) if self.prefix_reuse else [(0, rows)]
        for batch in token_batches([r for shared, members in groups if not shared for r in members], self.batch_tokens):
            self._score_batch(batch, temperature, out)
        cached = [g for g in groups if g[0]]
        for prefix_set in prefix_sets(cached, PREFIX_CACHE_FACTOR * self.batch_tokens):
            self._score_prefix_set(prefix_set, temperature, out)
        return out

    def _score_prefix_set(self, groups: list[tuple[int, list[PackedRow]]], temperature: float, out: np.ndarray) -> None:
        """Run each group's shared prefix once into a KV cache, then the remaining tokens of all the groups'
        rows in shared batches, every row against its own group's cached keys."""
        group_of, tails = {}, []
        for g, (shared, rows) in enumerate(groups):
            for row in rows:
                group_of[row.query_index] = g
                tails.append(row.tail(shared))
        longest = max(shared for shared, _ in groups) + max(len(t.input_ids) for t in tails)
        batches = token_batches(tails, self.batch_tokens, max(1, PREFIX_CACHE_FACTOR * self.batch_tokens // longest))
        room = max(padded_width(batch) for batch in batches)
        states = self._prefix_states([rows[0].input_ids[:shared] for shared, rows in groups], room)
        for batch in batches:
            which = [group_of[r.query_index] for r in batch]
            cache = states.cache_for(which, padded_width(batch))
            self._score_batch(batch, temperature, out, cache=cache, prefix_lens=[states.lengths[g] for g in which])

    def _prefix_states(self, prefixes: list[list[int]], room: int):
        """The KV states of ``prefixes``, run in token-budget batches like any rows."""
        from rarecast.backends.ragged_cache import PrefixStates

        states = PrefixStates([len(p) for p in prefixes], room)
        for batch in token_batches([pack_row(g, ids, []) for g, ids in enumerate(prefixes)], self.batch_tokens):
            output = self._decoder(*self._collate(batch), use_cache=True)
            states.write([r.query_index for r in batch], _cache_of(output))
            self.tokens_processed += sum(len(r.input_ids) for r in batch)
        return states

    def _decoder(self, ids, pos, mask, *, cache=None, use_cache: bool = False):
        """One pass of the base model (no LM head) over collated rows, continuing ``cache`` when given."""
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        extra = {self._cache_kw: cache, "use_cache": True} if cache is not None else {"use_cache": use_cache}
        # The math SDPA kernel gives each row the same numbers whatever the padded width of its batch; the
        # fused CPU kernel splits keys into blocks by width and differs by ~1e-5 nats after 30 layers.
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
            return self.model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos, **extra)

    def _pack(self, index: int, query: Query, continuations: Sequence[str]) -> PackedRow:
        prompt_text = render_prompt(self.tokenizer, query)
        prompt_ids = encode(self.tokenizer, prompt_text)
        conts = [continuation_ids(self.tokenizer, prompt_text, prompt_ids, c) for c in continuations]
        return pack_row(index, prompt_ids, conts)

    def _score_batch(
        self,
        batch: list[PackedRow],
        temperature: float,
        out: np.ndarray,
        *,
        cache=None,
        prefix_lens: Sequence[int] = (),
    ) -> None:
        """Score one batch into ``out``; with ``cache``, row ``b`` continues a cached prefix of
        ``prefix_lens[b]`` tokens."""
        import torch

        ids, pos, mask = self._collate(batch, prefix_lens)
        hidden = self._decoder(ids, pos, mask, cache=cache).last_hidden_state
        with torch.inference_mode():
            where, tokens, cells = self._gather_index(batch, ids.shape[1])
            picked = hidden.reshape(-1, hidden.shape[-1])[where].to(torch.float32)
            logits = _head(picked, self.head_weight)
            logp = torch.log_softmax(logits / temperature, dim=-1)
            values = logp.gather(1, tokens[:, None])[:, 0].double().cpu().numpy()
        np.add.at(out, cells, values)
        self.tokens_processed += sum(len(r.input_ids) for r in batch)

    def _collate(self, batch: list[PackedRow], prefix_lens: Sequence[int] = ()):
        """Right-padded ids, explicit position ids, and an additive 4-D mask in the model's dtype.

        With ``prefix_lens``, row ``b``'s keys are its cached prefix (``prefix_lens[b]`` columns) followed by
        its own tokens, and there are ``max(prefix_lens)`` more key columns than tokens (see
        :mod:`rarecast.backends.ragged_cache`).
        """
        import torch

        width = padded_width(batch)
        prefix_len = max(prefix_lens, default=0)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = np.full((len(batch), width), pad, dtype=np.int64)
        pos = np.zeros((len(batch), width), dtype=np.int64)
        allowed = np.zeros((len(batch), width, prefix_len + width), dtype=bool)
        for b, row in enumerate(batch):
            # Right padding: a row's keys sit at the same columns whatever the batch (and whether a prefix is
            # cached; see rarecast.backends.ragged_cache), so the attention sums run in the same order and results
            # do not depend on the batch.
            n = len(row.input_ids)
            ids[b, :n] = row.input_ids
            pos[b, :n] = row.position_ids
            start = prefix_lens[b] if prefix_lens else 0
            allowed[b, :n, :start] = True
            allowed[b, :n, start : start + n] = allowed_matrix(row)
            # Padding positions attend to themselves only: a fully masked row would turn into NaN in softmax.
            allowed[b, np.arange(n, width), start + np.arange(n, width)] = True
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~torch.from_numpy(allowed), torch.finfo(dtype).min)
        to = self.device
        return torch.from_numpy(ids).to(to), torch.from_numpy(pos).to(to), mask[:, None].to(to)

    def _gather_index(self, batch: list[PackedRow], width: int):
        import torch

        flat, tokens, qs, cs = [], [], [], []
        for b, row in enumerate(batch):
            for position, tok, qi, ci in row.targets:
                flat.append(b * width + position)
                tokens.append(tok)
                qs.append(qi)
                cs.append(ci)
        where = torch.tensor(flat, dtype=torch.long, device=self.device)
        toks = torch.tensor(tokens, dtype=torch.long, device=self.device)
        return where, toks, (np.array(qs, dtype=np.int64), np.array(cs, dtype=np.int64))

    # -- sampling ---------------------------------------------------------------------------------------------

    def sample(self, queries: Sequence[Query], k: int, settings: SamplingSettings) -> list[list[str]]:
        """``k`` replies per query from ``model.generate``.

        Each query gets its own generator state seeded from ``settings.seed`` and the query id, so a query's
        samples do not depend on which other queries share its chunk (reruns and resumed runs agree).
        Temperature 0 means greedy decoding. Sampling uses the full distribution (top_k disabled).
        """
        return [self._sample_one(q, k, settings) for q in queries]

    def _sample_one(self, query: Query, k: int, settings: SamplingSettings, chunk: int = 256) -> list[str]:
        import torch

        prompt_ids = encode(self.tokenizer, render_prompt(self.tokenizer, query))
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        greedy = settings.temperature == 0
        kwargs = dict(
            max_new_tokens=settings.max_tokens,
            do_sample=not greedy,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        if not greedy:
            # top_k=0: sample from the whole distribution (the model's generation config may default to 50).
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        n_draws = 1 if greedy else k
        replies: list[str] = []
        devices = [self.device] if self.device.type == "cuda" else []
        # fork_rng: seed this query's draws without disturbing the caller's global random state.
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(_query_seed(settings.seed, query.id))
            prefix = self._prefill(ids)
            while len(replies) < n_draws:
                m = min(chunk, n_draws - len(replies))
                cache = copy.deepcopy(prefix)
                cache.batch_repeat_interleave(m)
                batch = ids.expand(m, -1)
                gen = self.model.generate(
                    batch, attention_mask=torch.ones_like(batch), **{self._cache_kw: cache}, **kwargs
                )
                self.tokens_processed += int(gen.numel()) - m * (len(prompt_ids) - 1)
                replies += self.tokenizer.batch_decode(gen[:, len(prompt_ids) :], skip_special_tokens=True)
        self.tokens_processed += len(prompt_ids) - 1
        return replies * k if greedy else replies

    @property
    def _cache_kw(self) -> str:
        """The KV-cache keyword: ``cache`` in newer transformers, ``past_key_values`` before."""
        params = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def _prefill(self, ids):
        """KV cache of the prompt without its last token, computed once and shared by all k samples
        (generate then feeds only the last prompt token per sample)."""
        return _cache_of(self.model(ids[:, :-1], use_cache=True))


def _cache_of(output):
    """The KV cache a forward pass returned: ``cache`` in newer transformers, ``past_key_values`` before."""
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


def _head(hidden, weight):
    """fp32 logits ``hidden @ weight.T``, computed with at least :data:`MIN_GEMM_ROWS` rows.

    CPU GEMM kernels round differently for very few rows (a GEMV path for 1 row, other blockings below 12),
    so the same query would get slightly different logits alone than in a batch. Zero-padding the rows keeps
    one kernel for every call; the padded rows are dropped.
    """
    import torch

    n = hidden.shape[0]
    if n >= MIN_GEMM_ROWS:
        return hidden @ weight.T
    padded = torch.zeros((MIN_GEMM_ROWS, hidden.shape[1]), dtype=hidden.dtype, device=hidden.device)
    padded[:n] = hidden
    return (padded @ weight.T)[:n]


def _query_seed(seed: int | None, query_id: str) -> int:
    digest = hashlib.sha256(f"{seed}|{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


# ----------------------------------------------------------------------------------------------------------
# Loading


def make_backend(spec: str, *, dtype: str = "fp32", device: str | None = None, **opts) -> HFBackend:
    """Build the backend for ``spec`` (the part after ``hf:``): ``smollm2``, a hub id, a local folder, or a
    local ``.gguf`` file (de-quantized once into rarecast's cache).

    Options: ``dtype`` (``fp32`` default, or ``bf16``), ``device`` (``cpu``/``cuda``; default CUDA when
    available), ``batch_tokens`` (token budget per forward pass; default 2048 on
    a CPU, 16384 on CUDA), ``prefix_reuse`` (default on: compute a
    prefix shared by several prompts once).
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with _no_loader_progress_bars():
        if spec in ("smollm2", "default", ""):
            model, tokenizer, revision = load_smollm2(device)
            name = "hf:smollm2"
        elif spec.endswith(".gguf") and Path(spec).is_file():
            model, tokenizer, revision = load_gguf(Path(spec), device)
            name = f"hf:{Path(spec).name}"
        else:
            model, tokenizer, revision = _load_pretrained(spec, device)
            name = f"hf:{spec}"
    allowed = {"batch_tokens", "prefix_reuse"}
    unknown = set(opts) - allowed
    if unknown:
        raise InputError(
            f"unknown hf backend option(s) {sorted(unknown)}; known: dtype, device, batch_tokens, prefix_reuse"
        )
    return HFBackend(model, tokenizer, model_id=name, revision=revision, dtype=dtype, **opts)


@contextmanager
def _no_loader_progress_bars():
    """Hide transformers' own bars ("Loading weights") while a model loads: they would break into rarecast's
    output. The caller's setting comes back afterwards."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _load_pretrained(spec: str, device: str):
    """A local folder, or a hub id already in the Hugging Face cache. Local files only: a mistyped name would
    otherwise spend about a minute retrying a hub that rarecast never downloads from."""
    stay_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype="float32", local_files_only=True).to(device)
    except (OSError, ValueError) as exc:  # transformers raises ValueError for a folder it cannot read as a model
        if Path(spec).exists():
            raise InputError(
                f"cannot load hf model {spec!r} (a folder needs config.json, tokenizer files and weights): {exc}"
            ) from exc
        raise InputError(
            f"hf model {spec!r} is not found locally (neither a folder nor in the Hugging Face cache; rarecast "
            "does not download models). The embedded model is hf:smollm2; for another, point at a local folder "
            "with config.json and weights (hf:/path/to/folder) or at a GGUF file (hf:/path/to/model.gguf)"
        ) from None
    return model.eval(), tokenizer, _revision(spec, model)


def _revision(spec: str, model) -> str:
    """The hub commit hash when there is one; for a local folder, a hash of its config and weight files."""
    commit = getattr(model.config, "_commit_hash", None)
    if commit and not os.path.isdir(spec):
        return f"commit:{commit}"

    folder = Path(spec)
    files = sorted(p for p in folder.iterdir() if p.suffix in {".json", ".safetensors", ".bin"})
    combined = hashlib.sha256("".join(f"{p.name}:{file_digest(p)}" for p in files).encode()).hexdigest()
    return f"files-sha256:{combined}"
