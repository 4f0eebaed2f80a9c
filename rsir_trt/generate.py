"""RSIR generation with fidelity control, driving any runtime.

Everything random is drawn up front per trajectory (`Plan`), so the result depends only
on the seed and the settings, never on batching or the runtime: the engines and the
reference produce the same dataset. Validation and test targets are never seen: seeds
are training prefixes (and optionally synthetic rows)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from .data import SequenceData, Synthetic
from .errors import RsirError
from .prefix_rows import Admission, PrefixRows
from .system import machine

STOP_REASONS = ("fidelity", "no_remaining", "empty_pool", "max_len")


@dataclass
class GenConfig:
    tau: int = 10                 # rank threshold of the fidelity check
    p: float = 0.5                # probability of exploiting the seed's own items
    m: int = 5                    # trajectories per seed
    max_len: int = 50
    min_len: int = 3
    keep_failing: bool = False    # authors' code keeps the item before a failing check
    start: str = "first"          # first item of the seed | random prefix | random item
    sample_topk: int = 0          # 0 = greedy argmax; k = top-k sampling
    temperature: float = 1.0
    synthetic_seeds: bool = False # also seed from synthetic rows already in the data
    drop_known: bool = False      # also drop sequences the training data already holds as a row's prefix
    seed_max_items: int = 0       # only seeds of at most this many items (the sparse users); 0 = all
    seed: int = 0
    batch_size: int = 1024        # trajectories in flight per worker; its engine rows <= this
    workers: int = 0              # run side by side, one runtime each; 0 = the runtime's choice
    share_rows: bool = True       # False: one engine row per trajectory (to benchmark the sharing)

    def check(self) -> None:
        if self.tau < 1:
            raise RsirError(f"--tau must be >= 1, got {self.tau}")
        if not 0.0 <= self.p <= 1.0:
            raise RsirError(f"--p must be in [0, 1], got {self.p}")
        if self.m < 1:
            raise RsirError(f"--m must be >= 1, got {self.m}")
        if self.batch_size < 1:
            raise RsirError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise RsirError(f"--workers must be >= 0 (0 = auto), got {self.workers}")
        if self.max_len < self.min_len or self.min_len < 1:
            raise RsirError(f"--max-len {self.max_len} must be >= --min-len {self.min_len} >= 1")
        if self.start not in ("first", "prefix", "item"):
            raise RsirError(f"--start: {self.start!r} is not one of first, prefix, item")
        if self.seed_max_items < 0:
            raise RsirError(f"--seed-max-items must be >= 0 (0 = every seed), got {self.seed_max_items}")
        if self.sample_topk < 0 or not self.temperature > 0:
            raise RsirError("--sample-topk must be >= 0 and --temperature > 0")


@dataclass
class Plan:
    """Per trajectory: its seed, start prefix length and random draws for every step."""
    seed_mat: np.ndarray      # [rows, S] seed sequences, 0-padded (--start item: one rotation per start)
    seed_user: np.ndarray     # [rows] user index (provenance)
    seed_of: np.ndarray       # [N] which seed_mat row
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
    most = cfg.seed_max_items or np.inf
    keep = [i for i, s in enumerate(seeds) if 1 <= len(s) <= most]
    seed_mat = np.zeros((len(keep), S), dtype=np.int64)
    for r, i in enumerate(keep):
        s = seeds[i][-S:]
        seed_mat[r, : len(s)] = s
    seed_len = (seed_mat > 0).sum(1)
    rng = np.random.default_rng(cfg.seed)
    seed_of = np.repeat(np.arange(len(keep)), cfg.m)
    n = len(seed_of)
    seed_user = np.asarray(users)[keep]
    if cfg.start == "prefix":  # a random proper prefix: 1 .. len-1 items (at least 1)
        prefix = 1 + np.floor(rng.random(n) * np.maximum(seed_len[seed_of] - 1, 1)).astype(np.int64)
    else:
        prefix = np.ones(n, dtype=np.int64)
    if cfg.start == "item":  # a random item of the seed: start from its rotation (same item set)
        at = np.floor(rng.random(n) * seed_len[seed_of]).astype(np.int64)
        rows, seed_of = np.unique(seed_of * S + at, return_inverse=True)  # one row per (seed, item)
        src = rows // S
        seed_mat, seed_user = rotate(seed_mat[src], rows % S, seed_len[src]), seed_user[src]
    prefix = np.clip(prefix, 1, max(cfg.max_len - 1, 1))  # room for at least one generated item
    u_pool = rng.random((n, cfg.max_len), dtype=np.float32)
    u_sample = rng.random((n, cfg.max_len), dtype=np.float32) if cfg.sample_topk else u_pool
    return Plan(seed_mat, seed_user, seed_of, prefix, u_pool, u_sample)


def rotate(mat: np.ndarray, at: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row r's first lengths[r] items rotated to begin at position at[r]; padding stays 0."""
    pos = np.arange(mat.shape[1])[None, :]
    out = np.take_along_axis(mat, (at[:, None] + pos) % lengths[:, None], 1)  # make_plan keeps lengths >= 1
    return np.where(pos < lengths[:, None], out, 0)


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


def known_prefixes(data: SequenceData, min_len: int) -> set[bytes]:
    """Every prefix (>= min_len items) of every row the trainer already learns from. A new
    sequence equal to one adds no transition: the next-item loss already sees each of its
    positions with the same context, so it only weights those rows more."""
    return {np.asarray(s[:n], dtype=np.int64).tobytes() for s in data.training_set() for n in range(min_len, len(s) + 1)}


def finish(data: SequenceData, cfg: GenConfig, plan: Plan, trajectories: list, lengths: np.ndarray,
           reasons: np.ndarray, seconds: float, iteration: int, runtime) -> GenResult:
    """Keep length >= min_len, drop exact duplicates (first kept) and, with drop_known, the
    copies of training rows' prefixes; count everything. trajectories[t] is needed only
    where lengths[t] >= min_len (most are shorter: None)."""
    out = Synthetic()
    seen = set()
    known = known_prefixes(data, cfg.min_len) if cfg.drop_known else set()
    dupes = copies = 0
    for tid in np.flatnonzero(lengths >= cfg.min_len).tolist():
        seq = trajectories[tid]
        key = np.asarray(seq, dtype=np.int64).tobytes()
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        if key in known:
            copies += 1
            continue
        out.sequences.append(seq)
        out.seed_user.append(int(plan.seed_user[plan.seed_of[tid]]))
        out.iteration.append(iteration)
    lens = np.array([len(s) for s in out.sequences]) if out.sequences else np.zeros(1)
    generated = int(lengths.sum() - plan.prefix.sum())
    n_users, n_items = len(data.users), data.num_items - 1
    real = int(sum(len(s) for s in data.training_set()))
    new = int(sum(len(s) for s in out.sequences))
    stats = {
        "trajectories": plan.n, "kept": len(out), "too_short": int((lengths < cfg.min_len).sum()),
        "duplicates": dupes, **({"known_copies": copies} if cfg.drop_known else {}),
        "stop_reasons": {r: int((reasons == i).sum()) for i, r in enumerate(STOP_REASONS)},
        "mean_len": round(float(lens.mean()), 2), "max_len": int(lens.max()),
        "new_interactions": new, "generated_items": generated,
        "train_interactions_before": real, "train_interactions_after": real + new,
        "density_before_pct": round(100 * real / (n_users * n_items), 4),
        "density_after_pct": round(100 * (real + new) / ((n_users + len(out)) * n_items), 4),
        "seconds": round(seconds, 3), "sequences_per_s": round(plan.n / max(seconds, 1e-9), 1),
        "items_per_s": round(generated / max(seconds, 1e-9), 1),
        "config": asdict(cfg), "runtime": runtime.describe(), "machine": machine(torch=runtime.in_torch),
    }
    return GenResult(out, stats)


def generate(runtime, data: SequenceData, cfg: GenConfig, iteration: int = 1, progress=None) -> GenResult:
    """Run the policy on an engine runtime (torch, onnxruntime, tensorrt), batched: the
    engine runs one row per distinct trajectory state (prefix_rows.py); decisions are
    made per trajectory from its row's outputs. New trajectories are admitted as others
    finish, up to `batch_size` in flight per worker. With several workers each runs its own runtime
    in its own thread (the engine releases the GIL, so one worker's policy overlaps
    another's engine call), taking whole seeds from one shared queue; every
    trajectory's draws are planned up front, so the output never depends on which
    worker ran it."""
    if hasattr(runtime, "generate"):  # the reference algorithm has its own loop
        return runtime.generate(data, cfg, iteration, progress)
    cfg.check()
    S = runtime.meta.max_len
    if cfg.max_len > S:
        raise RsirError(f"--max-len {cfg.max_len} exceeds the engine's S_max {S}")
    if cfg.sample_topk > runtime.meta.topk:
        runtime.meta.check("engine", topk=cfg.sample_topk)
    plan = make_plan(data, cfg, S)
    start = time.perf_counter()  # the timing includes opening the workers' sessions
    runtimes = runtime.workers(max(1, min(cfg.workers or runtime.default_workers, len(plan.seed_mat))))
    # per worker: 1,024 each beat 1,024 shared by two workers (half the engine calls; 6%)
    capacity = max(1, min(cfg.batch_size, plan.n))
    admission = Admission(plan, S, share=cfg.share_rows)
    trajectories: list = [None] * plan.n
    lengths = np.zeros(plan.n, dtype=np.int64)
    reasons = np.full(plan.n, -1, dtype=np.int64)
    lock, done = threading.Lock(), [0]

    def ended(n: int) -> None:
        with lock:
            done[0] += n
            if progress:
                progress(done[0], plan.n)

    def work(rt):
        return run_policy(rt, admission, cfg, capacity, ended, trajectories, lengths, reasons)
    if len(runtimes) == 1:
        runs = [work(runtimes[0])]
    else:
        with ThreadPoolExecutor(len(runtimes)) as pool:
            runs = list(pool.map(work, runtimes))
    seconds = time.perf_counter() - start
    result = finish(data, cfg, plan, trajectories, lengths, reasons, seconds, iteration, runtime)
    result.stats.update(engine_calls=sum(r.calls for r in runs), engine_rows=sum(r.rows_run for r in runs),
                        engine_head_rows=sum(r.heads_run for r in runs), workers=len(runtimes))
    return result


def run_policy(runtime, admission: Admission, cfg: GenConfig, capacity: int, ended, trajectories: list,
               lengths: np.ndarray, reasons: np.ndarray) -> PrefixRows:
    """The generation policy on one runtime over the trajectories it takes from `admission`;
    results go into `trajectories` (those long enough to keep) / `lengths` / `reasons` (by
    trajectory id); `ended(n)` counts them."""
    plan = admission.plan
    rows = PrefixRows(runtime, admission, capacity, runtime.meta.max_len, cfg.tau)

    def close(sel: np.ndarray, why: int, drop_last: np.ndarray | None = None) -> None:
        j = np.flatnonzero(sel)
        if not len(j):
            return
        s, t = rows.state[rows.row[j]], rows.tid[j]   # the closing trajectories' state rows only
        k = rows.length[s] - (drop_last[j] if drop_last is not None else 0)
        lengths[t], reasons[t] = k, why
        long = k >= cfg.min_len   # about one in ten: the rest are only counted
        if long.any():
            block = rows.traj[s[long], : k[long].max()]   # one copy; each trajectory keeps a view of its row
            for tt, seq, kk in zip(t[long].tolist(), block, k[long].tolist()):
                trajectories[tt] = seq[:kk]

    rows.admit()
    while len(rows.tid):
        out = rows.step()
        decide = rows.deciding()
        if not decide.any():
            continue
        r, t = rows.row, rows.tid
        L = rows.length[rows.states()]
        fid = out.fidelity[r]
        # 1. fidelity check (before choosing): no remaining seed item, or the best one ranks below tau
        none_left = decide & (fid < 0)
        failed = decide & (fid >= cfg.tau)
        close(none_left, 1)
        close(failed, 0, drop_last=(L > plan.prefix[t]) & (not cfg.keep_failing))
        # 2. choose: exploit the seed's items with probability p, else explore everything
        go = decide & ~none_left & ~failed
        exploit = plan.u_pool[t, L] < cfg.p  # L < max_len: full trajectories are closed
        choice = np.zeros(len(t), dtype=np.int64)
        g = np.flatnonzero(go)
        if cfg.sample_topk and len(g):
            us, rg = plan.u_sample[t[g], L[g]], r[g]
            pick_seed = sample(rows.seeds[rg], out.seed_scores[rg], us, cfg.sample_topk, cfg.temperature)
            pick_all = sample(out.topk_ids[rg], out.topk_scores[rg], us, cfg.sample_topk, cfg.temperature)
            choice[g] = np.where(exploit[g], pick_seed, pick_all)
        else:
            choice[g] = np.where(exploit[g], out.best_seed_item[r[g]], out.best_item[r[g]])
        empty = go & (choice == 0)
        close(empty, 2)
        go &= ~empty
        if go.any():
            rows.append(np.flatnonzero(go), choice[go])
            full = go & (rows.length[rows.states()] >= cfg.max_len)
            close(full, 3)
            go &= ~full
            # no seed item left: the next check fails whatever the logits, so stop now
            # rather than run the row once more (4% of the state rows on all of Beauty)
            spent = go & ~rows.seeds[: rows.heads].any(axis=1)[rows.row]   # per head row, then per trajectory
            close(spent, 1)
            go &= ~spent
        alive = ~decide | go
        n_ended = len(alive) - int(alive.sum())
        rows.retire(alive)
        if n_ended:
            rows.admit()
            ended(n_ended)
    return rows
