"""The authors' generation algorithm as written (USTC-StarTeam/RSIR,
`generate_and_save_sequences_parallel`): every step one batched forward that recomputes
every active trajectory from its start, padded to S_max, then per trajectory in Python
the rank test ([|R|, V] comparison), a masked copy of the scores, the candidate pool
(the seed's items or all items), and top-1 within it. Faithful, not slowed down: the
oracle for parity and the baseline for speed. Shares the Plan (random draws) and
`finish` with generate.py, so its output is comparable byte for byte."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data import SequenceData
from ..evaluate import pad
from ..generate import GenConfig, GenResult, finish, make_plan, sample


class ReferenceRuntime:
    name = "reference"
    in_torch = True

    def __init__(self, model, meta):
        self.model, self.meta = model.eval(), meta

    def describe(self) -> dict:
        return {"runtime": self.name, "threads": torch.get_num_threads()}

    @torch.inference_mode()
    def generate(self, data: SequenceData, cfg: GenConfig, iteration: int = 1, progress=None) -> GenResult:
        cfg.check()
        plan = make_plan(data, cfg, self.meta.max_len)
        E = self.model.item_weight
        trajectories, reasons = [None] * plan.n, np.full(plan.n, -1)
        start = time.perf_counter()
        for lo in range(0, plan.n, cfg.batch_size):
            ids = list(range(lo, min(lo + cfg.batch_size, plan.n)))
            seeds = {t: [int(i) for i in plan.seed_mat[plan.seed_of[t]] if i] for t in ids}
            trajs = {t: seeds[t][: plan.prefix[t]] for t in ids}
            active = list(ids)
            while active:
                x = pad([np.array(trajs[t]) for t in active], self.meta.max_len)
                lengths = torch.tensor([len(trajs[t]) for t in active])
                h = self.model.encode(x)[torch.arange(len(active)), lengths - 1]
                logits = h @ E.T
                still = []
                for row, t in enumerate(active):
                    why = self._step(t, trajs[t], seeds[t], logits[row], plan, cfg)
                    if why is None:
                        still.append(t)
                    else:
                        trajectories[t], reasons[t] = np.array(trajs[t], dtype=np.int64), why
                active = still
            if progress:
                progress(ids[-1] + 1, plan.n)
        seconds = time.perf_counter() - start
        lengths = np.array([len(t) for t in trajectories], dtype=np.int64)
        return finish(data, cfg, plan, trajectories, lengths, reasons, seconds, iteration, self)

    @staticmethod
    def _step(t, traj, seed, logits, plan, cfg):
        """One decision for one trajectory; mutates traj; returns a stop reason index or None."""
        remaining = [j for j in seed if j not in set(traj)]
        if not remaining:
            return 1
        real = logits[1:]  # rank over real items (the authors' code also counts the padding id)
        ranks = (real > logits[torch.tensor(remaining)].unsqueeze(1)).sum(dim=1) + 1
        if not bool((ranks <= cfg.tau).any()):
            if len(traj) > plan.prefix[t] and not cfg.keep_failing:
                traj.pop()
            return 0
        L = len(traj)
        masked = logits.clone()
        masked[torch.tensor(traj)] = float("-inf")
        masked[0] = float("-inf")
        if plan.u_pool[t, L] < cfg.p:   # exploit: the seed's own items
            pool = torch.tensor(seed)
        else:                           # explore: the whole item set
            pool = torch.arange(1, len(logits))
        scores = masked[pool]
        if cfg.sample_topk:
            top = scores.topk(min(cfg.sample_topk, len(pool)))
            choice = int(sample(pool[top.indices].numpy()[None], top.values.numpy()[None],
                                plan.u_sample[t, L:L + 1], cfg.sample_topk, cfg.temperature)[0])
        else:
            best, where = scores.topk(1)
            choice = 0 if best[0] == float("-inf") else int(pool[where[0]])
        if choice == 0:
            return 2
        traj.append(choice)
        return 3 if len(traj) >= cfg.max_len else None
