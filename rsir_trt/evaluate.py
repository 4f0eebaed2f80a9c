"""Full-ranking evaluation: every item is a candidate, the user's history is excluded.

rank = #{other candidate items not scoring below the target}: ties and NaN count
against the target, so a model whose scores are constant or NaN (a diverged run)
ranks last instead of first. The metrics follow from the ranks (user_ranks.py)."""
from __future__ import annotations

import numpy as np
import torch

from .data import SequenceData
from .user_ranks import metrics_from_ranks
from .wide_matmul import all_item_scores


def pad(seqs: list[np.ndarray], length: int | None = None) -> torch.Tensor:
    """Right-pad with 0 to the longest sequence (or `length`)."""
    T = length or max(len(s) for s in seqs)
    out = np.zeros((len(seqs), T), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return torch.from_numpy(out)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, history: torch.Tensor,
                 overwrite: bool = False) -> torch.Tensor:
    """scores [B, V]; targets [B]; history [B, T] padded with 0 -> 0-based ranks [B].

    Padding and history items are excluded; the target itself never is (a repeat
    consumption still counts). Ties and NaN scores count against the target.
    overwrite=True masks `scores` in place (no B x V copy)."""
    target_score = scores.gather(1, targets[:, None])
    scores = scores.scatter_(1, history, float("-inf")) if overwrite else scores.scatter(1, history, float("-inf"))
    scores[:, 0] = float("-inf")
    scores.scatter_(1, targets[:, None], float("-inf"))  # not its own competitor
    # V - #below: one B x V comparison; NaN compares false, so it counts as not below
    below = (scores < target_score).sum(1, dtype=torch.int32)  # int32: int64 costs a slow B x V cast
    return scores.shape[1] - below


@torch.no_grad()
def rank_users(model, inputs: list[np.ndarray], targets: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    was_training = model.training
    model.eval()
    ranks = np.zeros(len(inputs), dtype=np.int64)
    max_len = model.config.max_len
    order = np.argsort([len(s) for s in inputs], kind="stable")  # similar lengths: little padding
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        # the model sees at most its last S_max items; history exclusion uses all of them
        hist = [inputs[i] for i in idx]
        seqs = [s[-max_len:] for s in hist]
        lengths = torch.tensor([len(s) for s in seqs])
        h = model.encode(pad(seqs))[torch.arange(len(seqs)), lengths - 1]
        scores = all_item_scores(h, model.item_weight)
        ranks[idx] = target_ranks(scores, torch.from_numpy(targets[idx]), pad(hist), overwrite=True).numpy()
    model.train(was_training)
    return ranks


def evaluate(model, data: SequenceData, split: str = "valid", batch_size: int = 1024) -> dict[str, float]:
    inputs, targets = data.eval_inputs(split)
    return metrics_from_ranks(rank_users(model, inputs, targets, batch_size))
