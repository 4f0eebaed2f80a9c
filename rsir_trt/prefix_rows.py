"""The engine rows generation runs: one state row per distinct trajectory state and one
head row per (state, seed), not one row per trajectory.

A seed's m trajectories start in the same state and differ only where their random
pool choices pick different items; until then they have the same cache, the same
logits and the same fidelity verdict, so they share one head row (on all of Beauty,
m=5: 3.1x fewer rows). Seeds that start with the same item start in the same state
too: their head rows share one state row (the cache, the transformer and the logits
run once; the head runs per seed on them; 1.5x fewer state rows than head rows), and
so do head rows that later choose the same item from the same state. When rows choose
different items they branch: each new choice gets a copy of the row (a state row's
cache with it). At most `capacity` trajectories are in flight, so rows never exceed
it; rows are kept dense in [0, n) (the engine runs on a view of the first n, no copy)
by moving the last live rows into the holes that finished ones leave."""
from __future__ import annotations

import threading

import numpy as np

from .runtime.base import remaining_seed_items


class Admission:
    """The plan's trajectories handed out, whole seeds at a time, to every worker's rows (a
    lock): a worker whose trajectories end early takes more, so the workers finish
    together. Fixed halves left one of two workers idle for a quarter of a Beauty run
    (its half needed 1.34x the engine rows of the other). Seeds go out ordered by their
    first item, so that seeds that start alike are in flight together and share state
    rows; which trajectories run together never changes their output (every draw is
    planned up front)."""

    def __init__(self, plan, S: int, share: bool = True):
        self.plan, self.share, self.next, self.lock = plan, share, 0, threading.Lock()
        # trajectories of one seed with the same start begin on one head row
        self.group = plan.seed_of * (S + 1) + plan.prefix if share else np.arange(plan.n)
        # a stable sort keeps each seed's trajectories together and in plan order
        self.order = np.argsort(plan.seed_mat[plan.seed_of, 0], kind="stable") if share else np.arange(plan.n)
        seed = plan.seed_of[self.order]
        starts = np.r_[True, seed[1:] != seed[:-1]]
        self.seed_start = np.maximum.accumulate(np.where(starts, np.arange(plan.n), 0))   # where each one's seed begins

    def take(self, room: int, busy: bool) -> np.ndarray:
        """The next trajectories, at most `room`, never part of a seed while others follow;
        a seed larger than the room waits while the worker is `busy`, else it is split."""
        with self.lock:
            n, start = self.plan.n, self.next
            end = min(start + room, n)
            if start < end < n and self.seed_start[end] != end:
                cut = int(self.seed_start[end])
                if cut > start:
                    end = cut
                elif busy:
                    end = start
            self.next = end
            return self.order[start:end]


def distinct_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique over the rows of a 2-D int64 array: (first index of each, inverse)."""
    keys = np.ascontiguousarray(a).view(np.dtype((np.void, a.dtype.itemsize * a.shape[1])))[:, 0]
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return first, inv.reshape(-1)


class PrefixRows:
    def __init__(self, runtime, admission: Admission, capacity: int, S: int, tau: int):
        self.runtime, self.admission, self.B, self.S = runtime, admission, capacity, S
        runtime.allocate(capacity)
        # state rows (a cache row each)
        self.traj = np.zeros((capacity, S), dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int64)      # items in the trajectory
        self.fed = np.zeros(capacity, dtype=np.int64)         # items already in the cache
        self.n = 0
        # head rows
        self.state = np.zeros(capacity, dtype=np.int64)       # the state row
        self.seeds = np.zeros((capacity, S), dtype=np.int64)  # the seed's items not in the trajectory, else 0
        self.tau = np.full(capacity, tau, dtype=np.int64)
        self.heads = 0
        # trajectories in flight
        self.tid = np.zeros(0, dtype=np.int64)
        self.row = np.zeros(0, dtype=np.int64)                # the head row
        self.calls = self.rows_run = self.heads_run = 0

    def _copy_state(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.runtime.move(src, dst, int(self.fed[src].max()))
        for a in (self.traj, self.length, self.fed):
            a[dst] = a[src]

    def admit(self) -> None:
        """Take the next trajectories from the plan while they fit."""
        adm, plan = self.admission, self.admission.plan
        t = adm.take(self.B - len(self.tid), busy=len(self.tid) > 0)
        if not len(t):
            return
        _, first, inv = np.unique(adm.group[t], return_index=True, return_inverse=True)
        seeds = plan.seed_mat[plan.seed_of[t[first]]]
        length = plan.prefix[t[first]]
        traj = seeds * (np.arange(self.S)[None, :] < length[:, None])
        sfirst, sinv = distinct_rows(traj) if adm.share else (np.arange(len(first)), np.arange(len(first)))
        srows = self.n + np.arange(len(sfirst))
        self.n += len(sfirst)
        self.traj[srows], self.length[srows], self.fed[srows] = traj[sfirst], length[sfirst], 0
        hrows = self.heads + np.arange(len(first))
        self.heads += len(first)
        self.state[hrows] = srows[sinv]
        self.seeds[hrows] = remaining_seed_items(seeds, traj)
        self.tid, self.row = np.concatenate([self.tid, t]), np.concatenate([self.row, hrows[inv]])

    def step(self):
        """Feed every state row its next item; returns the engine's per-head-row outputs."""
        n, P = self.n, self.heads
        pos = self.fed[:n].copy()
        out = self.runtime.step(self.traj[np.arange(n), pos], pos, self.traj[:n], self.state[:P], self.seeds[:P],
                                self.tau[:P])
        self.fed[:n] += 1
        self.calls, self.rows_run, self.heads_run = self.calls + 1, self.rows_run + n, self.heads_run + P
        return out

    def states(self) -> np.ndarray:
        """Per trajectory in flight: its state row."""
        return self.state[self.row]

    def deciding(self) -> np.ndarray:
        """Per trajectory: its whole prefix is in the cache, so it chooses now."""
        s = self.states()
        return self.fed[s] == self.length[s]

    def append(self, g: np.ndarray, choice: np.ndarray) -> None:
        """Trajectories `g` take items `choice`; a row whose trajectories differ branches."""
        V = int(choice.max()) + 1
        # head rows: one per (head row, choice); the first choice keeps the row
        uk, inv = np.unique(self.row[g] * V + choice, return_inverse=True)
        head, pick = uk // V, uk % V
        branch = np.r_[False, head[1:] == head[:-1]]
        hdest = head.copy()
        hdest[branch] = self.heads + np.arange(branch.sum())
        self.heads += int(branch.sum())
        self.seeds[hdest[branch]] = self.seeds[head[branch]]
        # state rows: one per (state row, choice), shared by head rows that chose alike
        uk2, inv2 = np.unique(self.state[head] * V + pick, return_inverse=True)
        state, spick = uk2 // V, uk2 % V
        sbranch = np.r_[False, state[1:] == state[:-1]]
        sdest = state.copy()
        sdest[sbranch] = self.n + np.arange(sbranch.sum())
        if sbranch.any():
            self._copy_state(state[sbranch], sdest[sbranch])
            self.n += int(sbranch.sum())
        self.traj[sdest, self.length[sdest]] = spick
        self.length[sdest] += 1
        self.state[hdest] = sdest[inv2]
        seeds = self.seeds[hdest]
        seeds[seeds == pick[:, None]] = 0
        self.seeds[hdest] = seeds
        self.row[g] = hdest[inv]

    def retire(self, alive: np.ndarray) -> None:
        """Keep only the trajectories `alive`; close up the rows nobody uses any more."""
        self.tid, self.row = self.tid[alive], self.row[alive]
        self.heads, self.row, holes, movers = _close_up(self.row, self.heads)
        self.state[holes], self.seeds[holes] = self.state[movers], self.seeds[movers]
        P = self.heads
        n, self.state[:P], holes, movers = _close_up(self.state[:P], self.n)
        if len(holes):
            self._copy_state(movers, holes)
        self.n = n


def _close_up(refs: np.ndarray, n: int):
    """Rows [0, n), of which those in `refs` live: (how many live, `refs` renumbered, the
    holes below that count, the live rows above it that move into them)."""
    live = np.zeros(n, dtype=bool)
    live[refs] = True
    k = int(live.sum())
    holes, movers = np.flatnonzero(~live[:k]), k + np.flatnonzero(live[k:])
    if not len(holes):
        return k, refs, holes, movers
    remap = np.arange(n)
    remap[movers] = holes
    return k, remap[refs], holes, movers
