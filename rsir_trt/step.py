"""The decode step: one generated item for a batch of trajectories, plus the RSIR head.

This module is what every engine runs: the torch runtime calls it directly and
export.py turns it into the ONNX graph, so both share one implementation. Only a few
integers per row (and the new cache rows) leave it; the B x V logits never do.

Rows come in two kinds. A state row is one trajectory state: its cache, its last item,
its hidden state and logits. A head row is one (state, seed) pair: trajectories of
different seeds in the same state (seeds that start with the same item) share a state
row, and the head runs once per seed on that row's logits (on all of Beauty, m=5: 1.5x
fewer state rows than head rows).

Inputs (all int64; R state rows, P head rows):
  item [R]            last item of each state
  pos [R]             its position (0-based); the cache holds positions < pos
  traj [R, S]         the trajectory so far, 0-padded (these items are masked)
  row [P]             each head row's state row
  seed_items [P, Ls]  the seed's items not yet in the trajectory, 0 elsewhere (the
                      caller keeps this up to date: 2,500 compares a row, cheaper on
                      the host, incrementally, than in the graph)
  tau [P]             the fidelity check's rank threshold
  cache...            past K/V buffers [R, H, S, dh] (SASRec) or states [R, D] (GRU4Rec)
Outputs (per head row unless said):
  fidelity [P]        min(tau, #{real items v: logit_v > max over remaining seed items});
                      -1 when no seed item remains. The check passes iff it is < tau.
  best_seed_item [P]  argmax of the logits over the remaining seed items (exploit pick)
  best_item [P]       argmax over all unused real items, 0 if none (explore pick);
                      exact where the check passes, 0 where it fails
  [topk_ids, topk_scores [P, k], seed_scores [P, Ls]]   only when topk > 0 (sampling)
  [logits [R, V]]     only when with_logits (parity tests)
  new cache rows      present.{i}.key/value [R, H, dh] or present_state.{i} [R, D]
"""
from __future__ import annotations

import torch
from torch import nn

from .engine_meta import HEAD_OUTPUTS, SAMPLING_OUTPUTS, STEP_INPUTS


BLOCK = 128   # logits columns are padded to a multiple of this (see first_argmax)
COUNT = torch.float32   # counts are summed in float32, exact below 2^24, whatever the logits' dtype (fp16 is not above 2,048)


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


def non_items_above(logit0: torch.Tensor, M: torch.Tensor, n_pad: int) -> torch.Tensor:
    """[B]: how many columns that are no items lie above M [B, 1]: item 0 (its logits
    logit0 [B]), and the n_pad pad columns, whose logits are exactly 0. Counts over
    columns subtract these."""
    out = (logit0 > M[:, 0]).to(COUNT)
    return out + n_pad * (M[:, 0] < 0).to(COUNT) if n_pad else out


def rsir_head(logits: torch.Tensor, seed_items: torch.Tensor, traj: torch.Tensor, topk: int = 0, n_pad: int = 0,
              tau: torch.Tensor | None = None):
    """The head over whole rows. logits [B, V + n_pad]: the last n_pad columns are
    zero-weight padding (logit exactly 0) that widen the row to a multiple of BLOCK; they
    are masked and never counted. Without `tau` the fidelity count is not capped."""
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
    above = (logits > M).to(COUNT).sum(dim=1) - non_items_above(logits[:, 0], M, n_pad)
    if tau is not None:
        above = torch.minimum(above, tau.to(COUNT))
    fidelity = torch.where(best_seed_score == neg_inf, torch.full_like(above, -1), above).to(torch.int64)
    best_item = first_argmax(masked)
    best_score = masked.gather(1, best_item[:, None])[:, 0]
    best_item = torch.where(best_score == neg_inf, torch.zeros_like(best_item), best_item)
    if tau is not None:   # defined where the check passes (as fast_head's)
        best_item = torch.where((fidelity >= 0) & (fidelity < tau), best_item, torch.zeros_like(best_item))
    out = [fidelity, best_seed_item, best_item]
    if topk:
        scores, ids = masked.topk(topk, dim=1)
        out += [ids, scores, seed_scores]
    return out


GATHER_BLOCKS = 16   # blocks fast_head gathers per row besides block 0; rows under a tau above 14 may need the whole row


def fast_head(logits: torch.Tensor, seed_items: torch.Tensor, traj: torch.Tensor, tau: torch.Tensor, n_pad: int,
              row: torch.Tensor | None = None):
    """rsir_head's greedy outputs (fidelity capped at tau, best_item where the check
    passes) from a few BLOCK-column blocks of each row instead of the whole row: the
    same values (tests/test_engine.py).

    Only the block maxima read the whole row. The blocks that matter are those whose
    maximum reaches M (the best remaining seed item's logit): every item above M is in
    one, and so is the best unused item of a row that passes, since it is at least M (the
    seed item itself is unused). A row that passes has at most tau - 1 items above M, so
    with K >= tau + 1 slots its blocks all fit: the count over them is exact and so is
    the pick. A row with more than K such blocks fails when at least tau + 2 of them
    are above M (each holds an item above M; item 0 and the pad columns account for at
    most two). The rest (many exact ties with M, or tau > K - 2) get rsir_head on their
    whole rows. Slots left over hold a block below M, which can neither count nor win.
    On ONNX Runtime's CPU kernels this replaces five passes over B x V (the masking
    copy, compare, cast, sum, masked block maxima) with one.

    `row` [B] maps the B head rows (seed_items, traj, tau) onto the rows of `logits`
    (state rows, see the module's docstring); None: one to one. Only [B, nb] block maxima
    and the gathered blocks are read per head row, never a logits row copy."""
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    R, width = logits.shape
    nb = width // BLOCK
    K = min(GATHER_BLOCKS, nb - 1)
    B = seed_items.shape[0]
    if row is None:
        row = torch.arange(R, device=logits.device)
    block_max = logits.reshape(R, nb, BLOCK).amax(dim=2)[row]               # [B, nb]
    # the exploit pick and M, from the remaining seed items (0 = none)
    flat = logits.reshape(R * width)
    seed_scores = torch.where(seed_items > 0, flat[row[:, None] * width + seed_items], neg_inf)
    best_seed_score, arg = seed_scores.max(dim=1)
    best_seed_item = seed_items.gather(1, arg[:, None])[:, 0]
    M = best_seed_score[:, None]
    no_seed = best_seed_score == neg_inf
    # block 0 and the blocks reaching M, ascending (so that the flat argmax below breaks
    # ties on the lower item id, the first-index rule), in slots 0..K; slot K + 1 takes
    # the blocks that do not fit and is dropped; block 0 is there for item 0's column,
    # where every masked item that is not gathered is sent
    block_ids = torch.arange(nb, device=logits.device).expand(B, nb)
    reach = (block_max >= M) | (block_ids == 0)
    n_reach = reach.to(COUNT).sum(dim=1)
    n_above = (block_max > M).to(COUNT).sum(dim=1)
    slot = torch.cumsum(reach.to(torch.int64), dim=1) - 1
    slot = torch.where(reach & (slot <= K), slot, torch.full_like(slot, K + 1))
    below = block_max.argmin(dim=1, keepdim=True)                            # fills slots left over
    sel = below.expand(B, K + 2).scatter(1, slot, block_ids)[:, : K + 1]
    G = logits.reshape(R * nb, BLOCK)[row[:, None] * nb + sel]               # [B, K + 1, BLOCK]
    # the fidelity count, capped at tau
    taus = tau.to(COUNT)
    count = (G > M[:, :, None]).to(COUNT).sum(dim=(1, 2)) - non_items_above(flat[row * width], M, n_pad)
    exact = n_reach <= K + 1
    fidelity = torch.where(exact, torch.minimum(count, taus), taus)
    known = exact | (n_above >= taus + 2) | no_seed
    passes = (fidelity < taus) & ~no_seed                                    # exact rows only
    # the explore pick, on the rows that pass only (half of them on Beauty: 4-7% of the
    # step): item 0, the trajectory's items and the pad columns masked
    go = passes.nonzero()[:, 0]
    n_go, sel_go = go.shape[0], sel[go]
    pad_ids = torch.arange(width - n_pad, width, dtype=traj.dtype, device=traj.device).expand(n_go, n_pad)
    used = torch.cat([torch.zeros_like(go[:, None]), traj[go], pad_ids], dim=1)
    slot_of = torch.full_like(sel_go[:, :1], K + 1).expand(n_go, nb).scatter(
        1, sel_go, torch.arange(K + 1, device=logits.device).expand(n_go, K + 1))   # K + 1: not gathered
    s = slot_of.gather(1, used // BLOCK)
    col = torch.where(s <= K, s * BLOCK + used % BLOCK, torch.zeros_like(s))
    masked = G[go].reshape(n_go, (K + 1) * BLOCK).scatter(1, col, neg_inf.expand(col.shape))
    j = first_argmax(masked)
    best_score = masked.gather(1, j[:, None])[:, 0]
    best_go = sel_go.gather(1, (j // BLOCK)[:, None])[:, 0] * BLOCK + j % BLOCK
    best_go = torch.where(best_score > neg_inf, best_go, torch.zeros_like(best_go))
    best_item = torch.zeros_like(best_seed_item).index_put((go,), best_go)
    fidelity = torch.where(no_seed, torch.full_like(fidelity, -1), fidelity).to(torch.int64)
    # the rows the blocks do not settle: the whole-row head on just those rows
    redo = (~known).nonzero()[:, 0]
    fid2, _, best2 = rsir_head(logits[row[redo]], seed_items[redo], traj[redo], 0, n_pad, tau[redo])
    return [fidelity.index_put((redo,), fid2), best_seed_item, best_item.index_put((redo,), best2)]


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
        return STEP_INPUTS + [n for n, _ in self.model.cache_shapes(1)]

    def output_names(self) -> list[str]:
        names = HEAD_OUTPUTS + (SAMPLING_OUTPUTS if self.topk else []) + (["logits"] if self.with_logits else [])
        return names + [n.replace("past_key_values", "present").replace("past_state", "present_state")
                        for n, _ in self.model.cache_shapes(1)]

    def forward(self, item, pos, traj, row, seed_items, tau, *cache):
        h, rows = self.model.step(item, pos, list(cache))
        weight = self.padded_weight()
        n_pad = weight.shape[0] - self.model.item_weight.shape[0]
        logits = h @ weight.T
        if self.topk or weight.shape[0] < 2 * BLOCK:   # sampling needs the whole rows' top-k
            out = rsir_head(logits[row], seed_items, traj[row], self.topk, n_pad, tau)
        else:
            out = fast_head(logits, seed_items, traj[row], tau, n_pad, row)
        if self.with_logits:
            out.append(logits[:, : logits.shape[1] - n_pad])
        return tuple(out + rows)


def io_names(model_config: dict, topk: int = 0, with_logits: bool = False) -> tuple[list[str], list[str]]:
    """The engine contract's input and output names, in order, from an engine's metadata:
    backends that enumerate tensors their own way (TensorRT) bind by these."""
    from .models import ModelConfig, create_model
    step = DecodeStep(create_model(ModelConfig.from_dict(model_config)), topk, with_logits)
    return step.input_names(), step.output_names()
