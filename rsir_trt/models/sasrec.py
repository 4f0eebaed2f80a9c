"""SASRec (Kang & McAuley, 2018): a causal Transformer over item ids, tied output embeddings.

Sequences are right-padded, so position p is the p-th item from the start and a real
position never attends to padding. `step` runs one item against a static KV cache and
reproduces `encode` exactly (tests/test_models.py)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class Block(nn.Module):
    """Post-LN Transformer block (as in SASRec and RecBole), GELU feed-forward."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.dim // c.heads
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.ln1 = nn.LayerNorm(c.dim, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(c.dim, c.ffn_mult * c.dim), nn.GELU(), nn.Linear(c.ffn_mult * c.dim, c.dim))
        self.ln2 = nn.LayerNorm(c.dim, eps=1e-12)
        self.drop = nn.Dropout(c.dropout)
        self.attn_dropout = c.attn_dropout

    def _split(self, x):  # [B, T, D] -> 3 x [B, H, T, dh]
        B, T, _ = x.shape
        return self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def _finish(self, x, attn):  # attn [B, H, T, dh]
        B, _, T, _ = attn.shape
        x = self.ln1(x + self.drop(self.proj(attn.transpose(1, 2).reshape(B, T, -1))))
        return self.ln2(x + self.drop(self.ffn(x)))

    def forward(self, x):
        q, k, v = self._split(x)
        p = self.attn_dropout if self.training else 0.0
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p))

    def step(self, x, past_k, past_v, valid):
        """x [B, D]; past_k/v [B, H, S, dh]; valid [B, 1, S] (True at filled positions).

        Attends to the cached rows plus itself; the new row is returned, not written,
        so the graph needs no scatter and the runtime owns the buffers."""
        q, k, v = self._split(x[:, None])                          # [B, H, 1, dh]
        scale = 1.0 / math.sqrt(self.head_dim)
        past = (q @ past_k.transpose(-1, -2)) * scale              # [B, H, 1, S]
        past = past.masked_fill(~valid[:, :, None, :], float("-inf"))
        own = (q * k).sum(-1, keepdim=True) * scale                # [B, H, 1, 1]
        w = torch.softmax(torch.cat([past, own], dim=-1), dim=-1)
        attn = w[..., :-1] @ past_v + w[..., -1:] * v              # [B, H, 1, dh]
        return self._finish(x[:, None], attn)[:, 0], k[:, :, 0], v[:, :, 0]


class SASRec(nn.Module):
    cache_kind = "kv"  # step returns one K/V row per layer; the runtime writes it at `pos`

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.item_emb = nn.Embedding(c.num_items, c.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        self.ln = nn.LayerNorm(c.dim, eps=1e-12)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.item_emb.weight

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs [B, T] right-padded item ids -> hidden states [B, T, D]."""
        pos = torch.arange(seqs.shape[1], device=seqs.device)
        x = self.drop(self.ln(self.item_emb(seqs) + self.pos_emb(pos)))
        for block in self.blocks:
            x = block(x)
        return x

    def cache_shapes(self, batch: int) -> list[tuple[str, tuple[int, ...]]]:
        c = self.config
        shape = (batch, c.heads, c.max_len, c.dim // c.heads)
        return [(f"past_key_values.{i}.{kv}", shape) for i in range(c.layers) for kv in ("key", "value")]

    def step(self, item: torch.Tensor, pos: torch.Tensor, cache: list[torch.Tensor]):
        """item, pos [B] -> hidden [B, D] and the new cache rows [B, H, dh] per buffer."""
        valid = (torch.arange(self.config.max_len, device=item.device)[None, :] < pos[:, None])[:, None]
        x = self.ln(self.item_emb(item) + self.pos_emb(pos))
        rows = []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, cache[2 * i], cache[2 * i + 1], valid)
            rows += [k, v]
        return x, rows
