"""GRU4Rec (Hidasi et al., 2016) with tied output embeddings.

Training runs the fused nn.GRU; `step` applies the same weights one item at a time, with
the recurrent state as the cache (replaced, not appended, each step)."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


class GRU4Rec(nn.Module):
    cache_kind = "state"  # step returns the whole new state of each layer

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.item_emb = nn.Embedding(c.num_items, c.dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.dim, c.dim, num_layers=c.layers, batch_first=True)
        self.out = nn.Linear(c.dim, c.dim)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.item_emb.weight

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.drop(self.item_emb(seqs)))
        return self.out(self.drop(h))

    def cache_shapes(self, batch: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"past_state.{i}", (batch, self.config.dim)) for i in range(self.config.layers)]

    def step(self, item: torch.Tensor, pos: torch.Tensor, cache: list[torch.Tensor]):
        # pos 0 starts a fresh trajectory: its state is zero whatever the slot held before
        fresh = (pos == 0)[:, None]
        x = self.item_emb(item)
        states = []
        for i, h in enumerate(cache):
            h = h.masked_fill(fresh, 0.0)
            w_ih, w_hh = getattr(self.gru, f"weight_ih_l{i}"), getattr(self.gru, f"weight_hh_l{i}")
            b_ih, b_hh = getattr(self.gru, f"bias_ih_l{i}"), getattr(self.gru, f"bias_hh_l{i}")
            gi = x @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            ir, iz, in_ = gi.chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            x = (1 - z) * n + z * h
            states.append(x)
        return self.out(x), states
