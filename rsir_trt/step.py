"""The decode step: one generated item for a batch of trajectories, plus the RSIR head.

This module is what every engine runs: the torch runtime calls it directly and
export.py turns it into the ONNX graph, so both share one implementation. Only a few
integers per row (and the new cache rows) leave it; the B x V logits never do.

Inputs (all int64):
  item [B]            last item of each trajectory
  pos [B]             its position (0-based); the cache holds positions < pos
  seed_items [B, Ls]  the seed sequence's items, 0-padded
  traj [B, S]         the trajectory so far, 0-padded (these items are masked)
  cache...            past K/V buffers [B, H, S, dh] (SASRec) or states [B, D] (GRU4Rec)
Outputs:
  fidelity [B]        #{real items v: logit_v > max over remaining seed items};
                      -1 when no seed item remains
  best_seed_item [B]  argmax of the logits over the remaining seed items (exploit pick)
  best_item [B]       argmax over all unused real items, 0 if none (explore pick)
  [topk_ids, topk_scores [B, k], seed_scores [B, Ls]]   only when topk > 0 (sampling)
  [logits [B, V]]     only when with_logits (parity tests)
  new cache rows      present.{i}.key/value [B, H, dh] or present_state.{i} [B, D]
"""
from __future__ import annotations

import torch
from torch import nn

from .engine_meta import HEAD_OUTPUTS, SAMPLING_OUTPUTS


BLOCK = 128   # logits columns are padded to a multiple of this (see first_argmax)


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """x.argmax(1) (the first index on ties, torch's and ONNX's rule) in two levels when the
    width is a multiple of BLOCK: the first block holding the row's maximum, then the
    first maximum inside it. On ONNX Runtime's CPU kernels 8x cheaper than one ArgMax
    over 12k columns (ArgMax is a scalar loop, ReduceMax is vectorised)."""
    if x.shape[1] % BLOCK:   # hand-made logits in tests
        return x.argmax(dim=1)
    blocks = x.reshape(-1, x.shape[1] // BLOCK, BLOCK)
    g = blocks.amax(dim=2).argmax(dim=1)
    j = blocks.gather(1, g[:, None, None].expand(-1, 1, BLOCK))[:, 0].argmax(dim=1)
    return g * BLOCK + j


def rsir_head(logits: torch.Tensor, seed_items: torch.Tensor, traj: torch.Tensor, topk: int = 0, n_pad: int = 0):
    """logits [B, V + n_pad]: the last n_pad columns are zero-weight padding (logit exactly 0)
    that widen the row to a multiple of BLOCK; they are masked and never counted."""
    # Written for ONNX Runtime's CPU kernels (profiled): each B x V pass costs as much as
    # the logits matmul, so there are four (scatter, compare, sum, block maxima), the
    # count is summed in float32 (int64 ReduceSum was 38% of the step; float32 counts are
    # exact below 2^24) and no B x V slice or concat is made.
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    B, width = logits.shape
    pad_ids = torch.arange(width - n_pad, width, dtype=traj.dtype, device=traj.device).expand(B, n_pad)
    used = torch.cat([torch.zeros_like(traj[:, :1]), traj, pad_ids], dim=1)   # padding (0), used items, pad columns
    masked = logits.scatter(1, used, neg_inf.expand(used.shape))
    seed_scores = masked.gather(1, seed_items)                          # padding/used seeds -> -inf
    best_seed_score, arg = seed_scores.max(dim=1)
    best_seed_item = seed_items.gather(1, arg[:, None])[:, 0]
    M = best_seed_score[:, None]
    not_real = (logits[:, :1] > M).to(logits.dtype)[:, 0]               # item 0
    if n_pad:
        not_real = not_real + n_pad * (M[:, 0] < 0).to(logits.dtype)    # the pad columns' 0.0 logits
    above = (logits > M).to(logits.dtype).sum(dim=1) - not_real
    fidelity = torch.where(best_seed_score == neg_inf, torch.full_like(best_seed_score, -1), above).to(torch.int64)
    best_item = first_argmax(masked)
    best_score = masked.gather(1, best_item[:, None])[:, 0]
    best_item = torch.where(best_score == neg_inf, torch.zeros_like(best_item), best_item)
    out = [fidelity, best_seed_item, best_item]
    if topk:
        scores, ids = masked.topk(topk, dim=1)
        out += [ids, scores, seed_scores]
    return out


class DecodeStep(nn.Module):
    def __init__(self, model, topk: int = 0, with_logits: bool = False):
        super().__init__()
        self.model = model.eval()
        self.topk = topk
        self.with_logits = with_logits
        self._padded: torch.Tensor | None = None

    def padded_weight(self) -> torch.Tensor:
        """The item table with zero rows appended up to a multiple of BLOCK. An export keeps
        the concat in the graph (the file holds the table once; engines fold it at load);
        eager runs build it once, not per step (0.6 ms of copying at Beauty's size)."""
        w = self.model.item_weight
        exporting = torch.jit.is_tracing() or torch.compiler.is_exporting()
        if exporting or self._padded is None:
            padded = torch.cat([w, w.new_zeros(-w.shape[0] % BLOCK, w.shape[1])])
            if exporting:
                return padded
            self._padded = padded.detach()
        return self._padded

    def input_names(self) -> list[str]:
        return ["item", "pos", "seed_items", "traj"] + [n for n, _ in self.model.cache_shapes(1)]

    def output_names(self) -> list[str]:
        names = HEAD_OUTPUTS + (SAMPLING_OUTPUTS if self.topk else []) + (["logits"] if self.with_logits else [])
        return names + [n.replace("past_key_values", "present").replace("past_state", "present_state")
                        for n, _ in self.model.cache_shapes(1)]

    def forward(self, item, pos, seed_items, traj, *cache):
        h, rows = self.model.step(item, pos, list(cache))
        weight = self.padded_weight()
        n_pad = weight.shape[0] - self.model.item_weight.shape[0]
        logits = h @ weight.T
        out = rsir_head(logits, seed_items, traj, self.topk, n_pad)
        if self.with_logits:
            out.append(logits[:, : logits.shape[1] - n_pad])
        return tuple(out + rows)


def io_names(model_config: dict, topk: int = 0, with_logits: bool = False) -> tuple[list[str], list[str]]:
    """The engine contract's input and output names, in order, from an engine's metadata:
    backends that enumerate tensors their own way (TensorRT) bind by these."""
    from .models import ModelConfig, create_model
    step = DecodeStep(create_model(ModelConfig.from_dict(model_config)), topk, with_logits)
    return step.input_names(), step.output_names()
