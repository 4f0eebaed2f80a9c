"""The authors' generation algorithm as written: every step one batched forward that
recomputes every active trajectory from its start, then the rank test and the choice
per trajectory in Python. Faithful, not slowed down: the oracle for parity and the
baseline for speed. Shares the Plan (random draws) and `finish` with generate.py."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..data import SequenceData
from ..evaluate import pad
from ..generate import GenConfig, GenResult, finish, make_plan, sample


class ReferenceRuntime:
    name = "reference"

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
                x = pad([np.array(trajs[t]) for t in active])
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
        return finish(data, cfg, plan, trajectories, reasons, time.perf_counter() - start, iteration,
                      self.describe())

    @staticmethod
    def _step(t, traj, seed, logits, plan, cfg):
        """One decision for one trajectory; mutates traj; returns a stop reason index or None."""
        used = set(traj)
        remaining = [j for j in seed if j not in used]
        if not remaining:
            return 1
        real = logits[1:]
        ranks = [int((real > logits[j]).sum()) + 1 for j in remaining]
        if min(ranks) > cfg.tau:
            if len(traj) > plan.prefix[t] and not cfg.keep_failing:
                traj.pop()
            return 0
        L = len(traj)
        masked = logits.clone()
        masked[0] = float("-inf")
        masked[list(used)] = float("-inf")
        if plan.u_pool[t, L] < cfg.p:   # exploit: the seed's own remaining items
            pool = torch.tensor(seed)
            scores = masked[pool]
            if cfg.sample_topk:
                choice = int(sample(pool.numpy()[None], scores.numpy()[None], plan.u_sample[t, L:L + 1],
                                    cfg.sample_topk, cfg.temperature)[0])
            else:
                choice = int(pool[int(scores.argmax())])
        else:                           # explore: the whole item set
            if cfg.sample_topk:
                s, i = masked.topk(cfg.sample_topk)
                choice = int(sample(i.numpy()[None], s.numpy()[None], plan.u_sample[t, L:L + 1],
                                    cfg.sample_topk, cfg.temperature)[0])
            else:
                choice = int(masked.argmax()) if torch.isfinite(masked.max()) else 0
        if choice == 0:
            return 2
        traj.append(choice)
        return 3 if len(traj) >= cfg.max_len else None
