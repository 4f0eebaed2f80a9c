"""Post-verification acquisition (DA-RSIR, arXiv 2610.04302; beyond the paper): of the
sequences that passed the fidelity check, keep at most `cap` per seed user, chosen by
the teacher's disagreement with itself under MC dropout (or the first ones generated).

With m=5 one seed can add up to five near-copies of one path; the cap spreads the
synthetic data over the seeds, and the disagreement prefers the sequences the model is
least sure of. Off by default (cap 0: RSIR as the paper runs it); on Beauty, three
seeds, cap 1 by disagreement gained nothing over the uncapped loops (README, Results)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .data import Synthetic
from .errors import RsirError
from .evaluate import pad
from .wide_matmul import all_item_scores

BY = ("first", "disagreement")


@dataclass
class AcquireConfig:
    cap: int = 0              # sequences kept per seed user; 0 keeps all (no acquisition)
    by: str = "disagreement"  # which ones: first (generation order) | disagreement (MC dropout)
    passes: int = 8           # dropout passes for the disagreement

    def check(self) -> None:
        if self.cap < 0:
            raise RsirError(f"--cap-per-seed must be >= 0, got {self.cap}")
        if self.by not in BY:
            raise RsirError(f"--acquire: {self.by!r} is not one of {', '.join(BY)}")
        if self.passes < 2:
            raise RsirError(f"--acquire-passes must be >= 2, got {self.passes}")


@torch.no_grad()
def disagreement(model, sequences: list[np.ndarray], passes: int, seed: int, batch: int = 128) -> np.ndarray:
    """Per sequence: the mean over its transitions of the sd, across `passes` forward
    passes with dropout on, of log p(next item | prefix) over the whole vocabulary."""
    S = model.config.max_len
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.train()   # dropout on: the passes differ only in their dropout masks
    out = np.zeros(len(sequences))
    try:
        with torch.random.fork_rng():   # the passes' seeds leave the caller's RNG as it was
            for lo in range(0, len(sequences), batch):
                seqs = [s[-S:] for s in sequences[lo:lo + batch]]
                x = pad(seqs, S)
                n = torch.tensor([len(s) for s in seqs])
                prefix = torch.arange(S)[None, :] < (n - 1)[:, None]          # positions with a next item
                target = x[:, 1:][prefix[:, :-1]]
                logp = []
                for _ in range(passes):
                    torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
                    h = model.encode(x)[prefix]                                 # [transitions, D]
                    z = all_item_scores(h, model.item_weight)
                    logp.append(z.gather(1, target[:, None])[:, 0] - torch.logsumexp(z[:, 1:], dim=1))
                sd = torch.stack(logp).std(dim=0)
                seq_of = torch.repeat_interleave(torch.arange(len(seqs)), n - 1)
                out[lo:lo + len(seqs)] = (torch.zeros(len(seqs)).index_add_(0, seq_of, sd) / (n - 1)).numpy()
    finally:
        model.train(was_training)
    return out


def acquire(syn: Synthetic, cfg: AcquireConfig, model=None, seed: int = 0) -> tuple[Synthetic, dict]:
    """The kept subset of `syn` (in its own order) and a summary for generation.json."""
    if not cfg.cap or not len(syn):
        return syn, {}
    start = time.perf_counter()
    seed_user = np.asarray(syn.seed_user)
    if cfg.by == "disagreement":
        score = disagreement(model, syn.sequences, cfg.passes, seed)
    else:
        score = -np.arange(len(syn), dtype=float)   # the first generated first
    order = np.lexsort((np.arange(len(syn)), -score, seed_user))   # per seed, highest score first, ties in order
    rank = np.empty(len(syn), dtype=np.int64)
    starts = np.r_[True, seed_user[order][1:] != seed_user[order][:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(syn)), 0))
    rank[order] = np.arange(len(syn)) - first
    keep = np.flatnonzero(rank < cfg.cap)
    kept = Synthetic([syn.sequences[i] for i in keep], seed_user[keep].tolist(), [syn.iteration[i] for i in keep])
    summary = {"candidates": len(syn), "kept": len(kept), "cap_per_seed": cfg.cap, "by": cfg.by,
               "seconds": round(time.perf_counter() - start, 2)}
    if cfg.by == "disagreement":
        summary.update(passes=cfg.passes, disagreement_kept_mean=round(float(score[keep].mean()), 4),
                       disagreement_all_mean=round(float(score.mean()), 4))
    return kept, summary
