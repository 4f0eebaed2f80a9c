"""The runtime interface generation drives. A runtime owns the cache buffers of `B`
slots; `step` runs the decode graph for every slot and writes the new cache rows."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..engine_meta import EngineMeta


@dataclass
class StepOut:
    fidelity: np.ndarray        # [B] int64, -1 = no remaining seed item
    best_seed_item: np.ndarray  # [B] int64
    best_item: np.ndarray       # [B] int64, 0 = nothing left
    topk_ids: np.ndarray | None = None     # [B, k]   (sampling engines)
    topk_scores: np.ndarray | None = None  # [B, k]
    seed_scores: np.ndarray | None = None  # [B, Ls]


class Runtime:
    name = "base"
    meta: EngineMeta

    @cached_property
    def n_head(self) -> int:
        """Head outputs before the cache rows (see step.py); read at every step, computed once."""
        from ..step import HEAD_OUTPUTS, SAMPLING_OUTPUTS
        return len(HEAD_OUTPUTS) + (len(SAMPLING_OUTPUTS) if self.meta.topk else 0) + int(self.meta.with_logits)

    @property
    def cache_kind(self) -> str:
        return "kv" if self.meta.model["kind"] == "sasrec" else "state"

    def allocate(self, batch: int) -> None:
        raise NotImplementedError

    def step(self, item, pos, seed_items, traj) -> StepOut:
        """All arguments int64 numpy arrays for the B allocated slots."""
        raise NotImplementedError

    def keep(self, rows: np.ndarray) -> None:
        """Shrink the cache to these slots (in this order)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"runtime": self.name}
