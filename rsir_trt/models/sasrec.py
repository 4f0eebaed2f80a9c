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


LAYOUTS = ("recbole", "kang")


class Block(nn.Module):
    """A Transformer block with a GELU feed-forward, in one of two layouts:
    recbole: post-LN, x = LN(x + attn(x)); x = LN(x + ffn(x)) (RecBole's SASRec);
    kang: the original SASRec code's, y = LN(x); x = y + attn(q=y, k=v=x); x = LN(x);
          x = x + ffn(x) (the model adds a final LayerNorm)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.dim // c.heads
        self.pre = c.layout == "kang"
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        self.ln1 = nn.LayerNorm(c.dim, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(c.dim, c.ffn_mult * c.dim), nn.GELU(), nn.Linear(c.ffn_mult * c.dim, c.dim))
        self.ln2 = nn.LayerNorm(c.dim, eps=1e-12)
        self.drop = nn.Dropout(c.dropout)
        self.attn_dropout = c.attn_dropout

    def _split(self, x):
        """x [B, T, D] -> the residual base and q, k, v [B, H, T, dh]."""
        B, T, D = x.shape
        if not self.pre:
            q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            return x, q, k, v
        y = self.ln1(x)  # the query (and the residual) from LN(x), keys and values from x
        W, b = self.qkv.weight, self.qkv.bias
        q = F.linear(y, W[:D], b[:D]).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k, v = F.linear(x, W[D:], b[D:]).view(B, T, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return y, q, k, v

    def _finish(self, base, attn):  # attn [B, H, T, dh]
        B, _, T, _ = attn.shape
        x = base + self.drop(self.proj(attn.transpose(1, 2).reshape(B, T, -1)))
        if self.pre:
            x = self.ln2(x)
            return x + self.drop(self.ffn(x))
        x = self.ln1(x)
        return self.ln2(x + self.drop(self.ffn(x)))

    def forward(self, x):
        base, q, k, v = self._split(x)
        p = self.attn_dropout if self.training else 0.0
        return self._finish(base, F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p))

    def step(self, x, past_k, past_v, valid):
        """x [B, D]; past_k/v [B, H, S, dh]; valid [B, 1, S] (True at filled positions).

        Attends to the cached rows plus itself; the new row is returned, not written,
        so the graph needs no scatter and the runtime owns the buffers."""
        base, q, k, v = self._split(x[:, None])                    # [B, H, 1, dh]
        scale = 1.0 / math.sqrt(self.head_dim)
        past = (q @ past_k.transpose(-1, -2)) * scale              # [B, H, 1, S]
        past = past.masked_fill(~valid[:, :, None, :], float("-inf"))
        own = (q * k).sum(-1, keepdim=True) * scale                # [B, H, 1, 1]
        w = torch.softmax(torch.cat([past, own], dim=-1), dim=-1)
        attn = w[..., :-1] @ past_v + w[..., -1:] * v              # [B, H, 1, dh]
        return self._finish(base, attn)[:, 0], k[:, :, 0], v[:, :, 0]


class SASRec(nn.Module):
    cache_kind = "kv"  # step returns one K/V row per layer; the runtime writes it at `pos`

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.kang = c.layout == "kang"
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
        x = self.drop(self._embed(seqs, pos))
        for block in self.blocks:
            x = block(x)
        return self.ln(x) if self.kang else x

    def _embed(self, items, pos):
        """kang: items scaled by sqrt(d), the LayerNorm comes last; recbole: LayerNorm first."""
        if self.kang:
            return self.item_emb(items) * self.config.dim ** 0.5 + self.pos_emb(pos)
        return self.ln(self.item_emb(items) + self.pos_emb(pos))

    def cache_shapes(self, batch: int) -> list[tuple[str, tuple[int, ...]]]:
        c = self.config
        shape = (batch, c.heads, c.max_len, c.dim // c.heads)
        return [(f"past_key_values.{i}.{kv}", shape) for i in range(c.layers) for kv in ("key", "value")]

    def step(self, item: torch.Tensor, pos: torch.Tensor, cache: list[torch.Tensor]):
        """item, pos [B] -> hidden [B, D] and the new cache rows [B, H, dh] per buffer."""
        valid = (torch.arange(self.config.max_len, device=item.device)[None, :] < pos[:, None])[:, None]
        x = self._embed(item, pos)
        rows = []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, cache[2 * i], cache[2 * i + 1], valid)
            rows += [k, v]
        return (self.ln(x) if self.kang else x), rows
