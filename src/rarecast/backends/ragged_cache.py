"""KV caches whose rows continue prefixes of different lengths, for batches that mix prefix groups.

The hf backend runs each shared prefix once and then scores the rest of many rows against it. Rows of
several small groups share one batch, so the cache holds prefixes of different lengths. transformers'
``DynamicCache`` appends a batch's new keys after the longest prefix, which would move a shorter-prefixed
row's own keys by the difference: its attention sums would then run in a different order than for the same
row alone, and its scores would differ by ~1e-5 nats after 30 layers. Here each row's new keys are written
right after its own prefix, so every row's keys sit at the columns they have in a batch of its own, and
mixing groups changes no score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PrefixStates:
    """Per layer, the keys and values of several prefixes, with room for ``room`` new tokens after the longest.

    Fill it with :meth:`write` from the caches of prefix forward passes, then take one cache per batch with
    :meth:`cache_for`. Columns past a prefix's end hold filler that the attention mask must hide.
    """

    def __init__(self, lengths: Sequence[int], room: int):
        self.lengths = list(lengths)
        self.columns = max(self.lengths) + room
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def write(self, prefixes: Sequence[int], cache: Cache) -> None:
        """Store the states of a forward pass over ``prefixes`` (indices into ``lengths``, one per row)."""
        where = torch.tensor(prefixes, device=cache.layers[0].keys.device)
        for i, layer in enumerate(cache.layers):
            if i == len(self.keys):
                _, heads, _, dim = layer.keys.shape
                self.keys.append(layer.keys.new_zeros((len(self.lengths), heads, self.columns, dim)))
                self.values.append(layer.values.new_zeros((len(self.lengths), heads, self.columns, dim)))
            self.keys[i][where, :, : layer.keys.shape[2]] = layer.keys
            self.values[i][where, :, : layer.values.shape[2]] = layer.values

    def cache_for(self, prefixes: Sequence[int], width: int) -> Cache:
        """A cache for a batch whose row ``b`` continues prefix ``prefixes[b]`` with ``width`` new tokens.

        After the model's update, row ``b``'s keys are its prefix, then its new keys, then filler, over
        ``max(lengths of the batch's prefixes) + width`` columns.
        """
        rows = torch.tensor(prefixes, device=self.keys[0].device)
        starts = torch.tensor([self.lengths[p] for p in prefixes], device=rows.device)
        columns = int(starts.max()) + width
        index = (starts[:, None] + torch.arange(width, device=rows.device))[:, None, :, None]
        return Cache(
            layers=[
                RaggedPrefixLayer(
                    k.index_select(0, rows)[:, :, :columns], v.index_select(0, rows)[:, :, :columns], index
                )
                for k, v in zip(self.keys, self.values)
            ]
        )


class RaggedPrefixLayer(DynamicLayer):
    """One layer of :meth:`PrefixStates.cache_for`: new keys are scattered into place after each row's prefix."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, index: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values, self.index = keys, values, index

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        index = self.index.expand(-1, key_states.shape[1], -1, key_states.shape[3])
        self.keys.scatter_(2, index, key_states)
        self.values.scatter_(2, index, value_states)
        return self.keys, self.values
