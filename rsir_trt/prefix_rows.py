"""The engine rows generation runs: one row per distinct trajectory state, not per
trajectory.

A seed's m trajectories start in the same state and differ only where their random
pool choices pick different items; until then they have the same cache, the same
logits and the same fidelity verdict, so they share one engine row (on all of Beauty,
m=5: 3.2x fewer rows). When a row's trajectories choose different items it branches:
each new choice gets a copy of the row (its cache with it). At most `capacity`
trajectories are in flight, so rows never exceed it; rows are kept dense in [0, n)
(the engine runs on a view of the first n, no copy) by moving the last live rows into
the holes that finished ones leave."""
from __future__ import annotations

import threading

import numpy as np

from .runtime.base import remaining_seed_items


class Admission:
    """The plan's trajectories handed out in order, whole seeds at a time, to every worker's
    rows (a lock): a worker whose trajectories end early takes more, so the workers finish
    together. Fixed halves left one of two workers idle for a quarter of a Beauty run
    (its half needed 1.34x the engine rows of the other)."""

    def __init__(self, plan, S: int, share: bool = True):
        self.plan, self.next, self.lock = plan, 0, threading.Lock()
        # trajectories of one seed with the same start begin on one row
        self.group = plan.seed_of * (S + 1) + plan.prefix if share else np.arange(plan.n)

    def take(self, room: int, busy: bool) -> np.ndarray:
        """The next trajectories, at most `room`, never part of a seed while others follow;
        a seed larger than the room waits while the worker is `busy`, else it is split."""
        with self.lock:
            plan, start = self.plan, self.next
            end = min(start + room, plan.n)
            if start < end < plan.n and plan.seed_of[end] == plan.seed_of[end - 1]:
                cut = int(np.searchsorted(plan.seed_of, plan.seed_of[end]))
                if cut > start:
                    end = cut
                elif busy:
                    end = start
            self.next = end
            return np.arange(start, end)


class PrefixRows:
    def __init__(self, runtime, admission: Admission, capacity: int, S: int, tau: int):
        self.runtime, self.admission, self.B, self.S = runtime, admission, capacity, S
        runtime.allocate(capacity)
        self.traj = np.zeros((capacity, S), dtype=np.int64)   # per row
        self.seeds = np.zeros((capacity, S), dtype=np.int64)  # the seed's items not in the trajectory, else 0
        self.tau = np.full(capacity, tau, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int64)      # items in the trajectory
        self.fed = np.zeros(capacity, dtype=np.int64)         # items already in the cache
        self.n = 0
        self.tid = np.zeros(0, dtype=np.int64)                # per trajectory in flight
        self.row = np.zeros(0, dtype=np.int64)                # ... and its row
        self.calls = self.rows_run = 0

    def _copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.runtime.move(src, dst, int(self.fed[src].max()))
        for a in (self.traj, self.seeds, self.length, self.fed):
            a[dst] = a[src]

    def admit(self) -> None:
        """Take the next trajectories from the plan while they fit."""
        plan = self.admission.plan
        t = self.admission.take(self.B - len(self.tid), busy=len(self.tid) > 0)
        if not len(t):
            return
        _, first, inv = np.unique(self.admission.group[t], return_index=True, return_inverse=True)
        rows = self.n + np.arange(len(first))
        self.n += len(first)
        self.seeds[rows] = plan.seed_mat[plan.seed_of[t[first]]]
        self.length[rows] = plan.prefix[t[first]]
        self.traj[rows] = self.seeds[rows] * (np.arange(self.S)[None, :] < self.length[rows][:, None])
        self.seeds[rows] = remaining_seed_items(self.seeds[rows], self.traj[rows])
        self.fed[rows] = 0
        self.tid, self.row = np.concatenate([self.tid, t]), np.concatenate([self.row, rows[inv]])

    def step(self):
        """Feed every row its next item; returns the engine's per-row outputs."""
        n = self.n
        pos = self.fed[:n].copy()
        out = self.runtime.step(self.traj[np.arange(n), pos], pos, self.seeds[:n], self.traj[:n], self.tau[:n])
        self.fed[:n] += 1
        self.calls, self.rows_run = self.calls + 1, self.rows_run + n
        return out

    def deciding(self) -> np.ndarray:
        """Per trajectory: its whole prefix is in the cache, so it chooses now."""
        return self.fed[self.row] == self.length[self.row]

    def append(self, g: np.ndarray, choice: np.ndarray) -> None:
        """Trajectories `g` take items `choice`; a row whose trajectories differ branches."""
        V = int(choice.max()) + 1
        uk, inv = np.unique(self.row[g] * V + choice, return_inverse=True)
        parent, pick = uk // V, uk % V
        branch = np.r_[False, parent[1:] == parent[:-1]]  # the first choice keeps the row
        dest = parent.copy()
        dest[branch] = self.n + np.arange(branch.sum())
        if branch.any():
            self._copy(parent[branch], dest[branch])
            self.n += int(branch.sum())
        self.traj[dest, self.length[dest]] = pick
        seeds = self.seeds[dest]
        seeds[seeds == pick[:, None]] = 0
        self.seeds[dest] = seeds
        self.length[dest] += 1
        self.row[g] = dest[inv]

    def retire(self, alive: np.ndarray) -> None:
        """Keep only the trajectories `alive`; close up the rows nobody uses any more."""
        self.tid, self.row = self.tid[alive], self.row[alive]
        live = np.zeros(self.n, dtype=bool)
        live[self.row] = True
        n = int(live.sum())
        holes = np.flatnonzero(~live[:n])
        if len(holes):
            movers = n + np.flatnonzero(live[n:])
            self._copy(movers, holes)
            remap = np.arange(self.n)
            remap[movers] = holes
            self.row = remap[self.row]
        self.n = n
