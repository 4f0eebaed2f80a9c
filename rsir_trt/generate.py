"""RSIR generation with fidelity control, driving any runtime.

Everything random is drawn up front per trajectory (`Plan`), so the result depends only
on the seed and the settings, never on batching or the runtime: the engines and the
reference produce the same dataset. Validation and test targets are never seen: seeds
are training prefixes (and optionally synthetic rows)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .data import SequenceData, Synthetic
from .errors import RsirError

STOP_REASONS = ("fidelity", "no_remaining", "empty_pool", "max_len")


@dataclass
class GenConfig:
    tau: int = 10                 # rank threshold of the fidelity check
    p: float = 0.5                # probability of exploiting the seed's own items
    m: int = 5                    # trajectories per seed
    max_len: int = 50
    min_len: int = 3
    keep_failing: bool = False    # authors' code keeps the item before a failing check
    start: str = "first"          # first item of the seed | random prefix
    sample_topk: int = 0          # 0 = greedy argmax; k = top-k sampling
    temperature: float = 1.0
    synthetic_seeds: bool = False # also seed from synthetic rows already in the data
    seed: int = 0
    batch_size: int = 256

    def check(self) -> None:
        if self.tau < 1:
            raise RsirError(f"--tau must be >= 1, got {self.tau}")
        if not 0.0 <= self.p <= 1.0:
            raise RsirError(f"--p must be in [0, 1], got {self.p}")
        if self.m < 1:
            raise RsirError(f"--m must be >= 1, got {self.m}")
        if self.batch_size < 1:
            raise RsirError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_len < self.min_len or self.min_len < 1:
            raise RsirError(f"--max-len {self.max_len} must be >= --min-len {self.min_len} >= 1")
        if self.start not in ("first", "prefix"):
            raise RsirError(f"--start: {self.start!r} is not one of first, prefix")
        if self.sample_topk < 0 or not self.temperature > 0:
            raise RsirError("--sample-topk must be >= 0 and --temperature > 0")


@dataclass
class Plan:
    """Per trajectory: its seed, start prefix length and random draws for every step."""
    seed_mat: np.ndarray      # [n_seeds, S] seed sequences, 0-padded
    seed_user: np.ndarray     # [n_seeds] user index (provenance)
    seed_of: np.ndarray       # [N] which seed
    prefix: np.ndarray        # [N] start length (1 = first item)
    u_pool: np.ndarray        # [N, max_len] exploit iff u < p
    u_sample: np.ndarray      # [N, max_len] inverse-CDF draw for sampling

    @property
    def n(self) -> int:
        return len(self.seed_of)


def make_plan(data: SequenceData, cfg: GenConfig, S: int) -> Plan:
    seeds = data.train_sequences()
    users = list(range(len(seeds)))
    if cfg.synthetic_seeds:
        seeds += data.synthetic.sequences
        users += data.synthetic.seed_user
    keep = [i for i, s in enumerate(seeds) if len(s) >= 1]
    seed_mat = np.zeros((len(keep), S), dtype=np.int64)
    for r, i in enumerate(keep):
        s = seeds[i][-S:]
        seed_mat[r, : len(s)] = s
    seed_len = (seed_mat > 0).sum(1)
    rng = np.random.default_rng(cfg.seed)
    seed_of = np.repeat(np.arange(len(keep)), cfg.m)
    n = len(seed_of)
    if cfg.start == "prefix":  # a random proper prefix: 1 .. len-1 items (at least 1)
        prefix = 1 + np.floor(rng.random(n) * np.maximum(seed_len[seed_of] - 1, 1)).astype(np.int64)
    else:
        prefix = np.ones(n, dtype=np.int64)
    prefix = np.clip(prefix, 1, max(cfg.max_len - 1, 1))  # room for at least one generated item
    u_pool = rng.random((n, cfg.max_len), dtype=np.float32)
    u_sample = rng.random((n, cfg.max_len), dtype=np.float32) if cfg.sample_topk else u_pool
    return Plan(seed_mat, np.asarray(users)[keep], seed_of, prefix, u_pool, u_sample)


def sample(ids: np.ndarray, scores: np.ndarray, u: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """Top-k sampling with temperature, by inverse CDF with the planned draws u [n].

    ids/scores [n, c] (c >= k allowed: the best k are kept); -inf scores never chosen;
    returns 0 where no candidate is finite."""
    if scores.shape[1] > k:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids, scores = np.take_along_axis(ids, top, 1), np.take_along_axis(scores, top, 1)
    finite = np.isfinite(scores)
    z = np.where(finite, scores / temperature, -np.inf)
    zmax = np.max(np.where(finite, z, -1e30), axis=1, keepdims=True)
    w = np.where(finite, np.exp(z - zmax), 0.0)
    cum = np.cumsum(w, axis=1)
    total = cum[:, -1:]
    pick = np.minimum((cum < u[:, None] * total).sum(1), scores.shape[1] - 1)
    chosen = np.take_along_axis(ids, pick[:, None], 1)[:, 0]
    return np.where(total[:, 0] > 0, chosen, 0)


@dataclass
class GenResult:
    synthetic: Synthetic
    stats: dict


def finish(data: SequenceData, cfg: GenConfig, plan: Plan, trajectories: list, reasons: np.ndarray,
           seconds: float, iteration: int, runtime: dict) -> GenResult:
    """Keep length >= min_len, drop exact duplicates (first kept), count everything."""
    out = Synthetic()
    seen = set()
    dupes = 0
    for tid, seq in enumerate(trajectories):
        if len(seq) < cfg.min_len:
            continue
        key = seq.tobytes()
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out.sequences.append(seq)
        out.seed_user.append(int(plan.seed_user[plan.seed_of[tid]]))
        out.iteration.append(iteration)
    lens = np.array([len(s) for s in out.sequences]) if out.sequences else np.zeros(1)
    generated = int(sum(len(t) for t in trajectories) - plan.prefix.sum())
    n_users, n_items = len(data.users), data.num_items - 1
    real = int(sum(len(s) for s in data.training_set()))
    new = int(sum(len(s) for s in out.sequences))
    stats = {
        "trajectories": plan.n, "kept": len(out), "too_short": int(sum(len(t) < cfg.min_len for t in trajectories)),
        "duplicates": dupes, "stop_reasons": {r: int((reasons == i).sum()) for i, r in enumerate(STOP_REASONS)},
        "mean_len": round(float(lens.mean()), 2), "max_len": int(lens.max()),
        "new_interactions": new, "generated_items": generated,
        "train_interactions_before": real, "train_interactions_after": real + new,
        "density_before_pct": round(100 * real / (n_users * n_items), 4),
        "density_after_pct": round(100 * (real + new) / ((n_users + len(out)) * n_items), 4),
        "seconds": round(seconds, 3), "sequences_per_s": round(plan.n / max(seconds, 1e-9), 1),
        "items_per_s": round(generated / max(seconds, 1e-9), 1),
        "config": asdict(cfg), "runtime": runtime,
    }
    return GenResult(out, stats)


def generate(runtime, data: SequenceData, cfg: GenConfig, iteration: int = 1, progress=None) -> GenResult:
    """Run the policy on an engine runtime (torch, onnxruntime, tensorrt), batched.

    Slots are refilled as trajectories finish (continuous batching); when the queue is
    empty the batch is compacted so finished rows stop costing work."""
    if hasattr(runtime, "generate"):  # the reference algorithm has its own loop
        return runtime.generate(data, cfg, iteration, progress)
    cfg.check()
    S = runtime.meta.max_len
    if cfg.max_len > S:
        raise RsirError(f"--max-len {cfg.max_len} exceeds the engine's S_max {S}")
    if cfg.sample_topk > runtime.meta.topk:
        runtime.meta.check("engine", topk=cfg.sample_topk)
    plan = make_plan(data, cfg, S)
    N = plan.n
    trajectories: list = [None] * N
    reasons = np.full(N, -1, dtype=np.int64)
    B = min(cfg.batch_size, N)
    runtime.allocate(B)
    traj = np.zeros((B, S), dtype=np.int64)
    seeds = np.zeros((B, S), dtype=np.int64)
    length = np.zeros(B, dtype=np.int64)   # items in the trajectory
    fed = np.zeros(B, dtype=np.int64)      # items already in the cache
    tid = np.full(B, -1, dtype=np.int64)
    next_tid = 0
    start = time.perf_counter()

    def load(slots: np.ndarray) -> None:
        nonlocal next_tid
        take = min(len(slots), N - next_tid)
        tid[slots] = -1
        if take <= 0:
            return
        s, t = slots[:take], np.arange(next_tid, next_tid + take)
        next_tid += take
        tid[s] = t
        seeds[s] = plan.seed_mat[plan.seed_of[t]]
        length[s] = plan.prefix[t]
        traj[s] = seeds[s] * (np.arange(S)[None, :] < length[s][:, None])
        fed[s] = 0

    def close(rows: np.ndarray, why: int, drop_last: np.ndarray | None = None) -> None:
        for j, r in enumerate(rows):
            n = length[r] - (1 if drop_last is not None and drop_last[j] else 0)
            trajectories[tid[r]] = traj[r, :n].copy()
            reasons[tid[r]] = why

    load(np.arange(B))
    done = 0
    while True:
        live = tid >= 0
        if not live.any():
            break
        if next_tid >= N and live.sum() <= len(tid) // 2:  # queue drained: compact
            keep = np.flatnonzero(live)
            runtime.keep(keep)
            traj, seeds, length, fed, tid = traj[keep], seeds[keep], length[keep], fed[keep], tid[keep]
            continue
        pos = np.minimum(fed, S - 1)  # finished slots idle at a valid position
        out = runtime.step(traj[np.arange(len(tid)), pos], pos, seeds, traj)
        fed += 1
        decide = np.flatnonzero(live & (fed == length))
        if len(decide) == 0:
            continue
        t_id, L = tid[decide], length[decide]
        fid = out.fidelity[decide]
        finished = np.zeros(len(decide), dtype=bool)
        # 1. fidelity check (before choosing): no remaining seed item, or the best one ranks below tau
        none_left = fid < 0
        failed = ~none_left & (fid >= cfg.tau)
        close(decide[none_left], 1)
        generated_last = L > plan.prefix[t_id]
        close(decide[failed], 0, drop_last=generated_last[failed] & (not cfg.keep_failing))
        finished |= none_left | failed
        # 2. choose: exploit the seed's items with probability p, else explore everything
        go = ~finished
        u = plan.u_pool[t_id, L]
        exploit = u < cfg.p
        if cfg.sample_topk:
            us = plan.u_sample[t_id, L]
            pick_seed = sample(seeds[decide], out.seed_scores[decide], us, cfg.sample_topk, cfg.temperature)
            pick_all = sample(out.topk_ids[decide], out.topk_scores[decide], us, cfg.sample_topk, cfg.temperature)
            choice = np.where(exploit, pick_seed, pick_all)
        else:
            choice = np.where(exploit, out.best_seed_item[decide], out.best_item[decide])
        empty = go & (choice == 0)
        close(decide[empty], 2)
        go &= ~empty
        rows_go = decide[go]
        traj[rows_go, length[rows_go]] = choice[go]
        length[rows_go] += 1
        full = length[decide] >= cfg.max_len
        close(decide[go & full], 3)
        finished |= empty | (go & full)
        ended = decide[finished]
        done += len(ended)
        if len(ended):
            load(ended)
            if progress:
                progress(done, N)
    seconds = time.perf_counter() - start
    return finish(data, cfg, plan, trajectories, reasons, seconds, iteration, runtime.describe())
