"""The runtime interface generation drives. A runtime owns the cache buffers of up to
`B` state rows; `step` runs the decode graph on the first n state rows (n = len(item),
a view, no copy) and the head rows over them, and writes the new cache rows; `move`
copies rows inside the buffers."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..engine_meta import HEAD_OUTPUTS, SAMPLING_OUTPUTS, EngineMeta
from ..errors import RsirError


@dataclass
class StepOut:
    fidelity: np.ndarray        # [B] int64, -1 = no remaining seed item
    best_seed_item: np.ndarray  # [B] int64
    best_item: np.ndarray       # [B] int64, 0 = nothing left
    topk_ids: np.ndarray | None = None     # [B, k]   (sampling engines)
    topk_scores: np.ndarray | None = None  # [B, k]
    seed_scores: np.ndarray | None = None  # [B, Ls]


def remaining_seed_items(seed_items: np.ndarray, traj: np.ndarray) -> np.ndarray:
    """The engine's seed_items input: each row's seed items that are not in its trajectory, 0 elsewhere."""
    out = seed_items.copy()
    for k in range(int((traj > 0).sum(axis=1).max(initial=0))):   # trajectories are 0-padded on the right
        item = traj[:, k:k + 1]
        out[(out == item) & (item > 0)] = 0
    return out


class Runtime:
    name = "base"
    in_torch = False   # whether torch computes its results (then the machine record names torch)
    meta: EngineMeta

    @cached_property
    def n_head(self) -> int:
        """Head outputs before the cache rows (see step.py); read at every step, computed once."""
        return len(HEAD_OUTPUTS) + (len(SAMPLING_OUTPUTS) if self.meta.topk else 0) + int(self.meta.with_logits)

    @property
    def cache_kind(self) -> str:
        return "kv" if self.meta.model["kind"] == "sasrec" else "state"

    default_workers = 1  # how many workers generation runs side by side (workers())

    def workers(self, k: int) -> list["Runtime"]:
        """k runtimes over the same engine, each with its own cache (generation's workers)."""
        if k == 1:
            return [self]
        raise RsirError(f"--workers {k}: the {self.name} runtime runs one worker (several: onnxruntime on CPU)")

    def allocate(self, batch: int) -> None:
        raise NotImplementedError

    def step(self, item, pos, traj, row, seed_items, tau) -> StepOut:
        """All arguments int64 numpy arrays: item, pos, traj for the first n <= B state
        rows; row, seed_items (the remaining ones, see remaining_seed_items), tau for the
        head rows (step.py). The outputs are per head row."""
        raise NotImplementedError

    def head(self, outs: list[np.ndarray]) -> StepOut:
        """The step's host outputs, in contract order, as a StepOut (a logits output, if any, is left out)."""
        return StepOut(*outs[:3], *(outs[3:6] if self.meta.topk else []))

    def write_rows(self, rows: list, b, pos) -> None:
        """After a step: the new cache rows of rows `b` (= 0..n-1, as the buffers index),
        K/V written at position `pos`, recurrent states replaced."""
        for buf, row in zip(self.cache, rows):
            if self.cache_kind == "kv":
                buf[b, :, pos] = row
            else:
                buf[: len(row)] = row

    def move(self, src: np.ndarray, dst: np.ndarray, filled: int) -> None:
        """Copy the cache rows `src` onto the rows `dst` (a branching or compacted trajectory);
        K/V positions >= `filled` are never read, so they need not be copied."""
        s, d = self.index(src), self.index(dst)
        for c in self.cache:
            if self.cache_kind == "kv":
                c[d, :, :filled] = c[s, :, :filled]
            else:
                c[d] = c[s]

    def index(self, rows: np.ndarray):
        """Row indices as the cache buffers take them (numpy here; device tensors for torch)."""
        return rows

    def describe(self) -> dict:
        return {"runtime": self.name}
