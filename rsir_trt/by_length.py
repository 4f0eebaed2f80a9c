"""Where a gain comes from: test metrics by the user's history length.

RSIR seeds its synthetic sequences from real users, and the paper's case for it is
sparse histories. The overall gain averages users whose histories are 2 items long with
users at 50, so the comparison of loops over seeds can also split the test users by
how many items they have before the test target (`compare --by-length 5,10,20`, and
the loop's report)."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from . import user_ranks
from .errors import RsirError
from .report import CHANGE_KEYS, gain


def parse_edges(text: str) -> list[int]:
    """'5,10,20' -> [5, 10, 20]: the buckets' upper ends, increasing, >= 1."""
    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RsirError(f"--by-length: {text!r} is not a comma-separated list of integers") from None
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise RsirError(f"--by-length: give increasing history lengths >= 1, got {text!r}")
    return edges


def bucket_labels(edges: list[int]) -> list[str]:
    """[5, 10] -> ['1-5', '6-10', '11+'] (one item buckets read '6')."""
    lows = [1] + [e + 1 for e in edges]
    labels = [f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in zip(lows, edges)]
    return labels + [f"{lows[-1]}+"]


def metrics_by_length(ranks: np.ndarray, lengths: np.ndarray, edges: list[int]) -> list[dict]:
    """The metrics of the users in each history-length bucket (lengths <= edges[0], ...,
    > edges[-1]), empty buckets left out, then all users together."""
    ranks, lengths = np.asarray(ranks), np.asarray(lengths)
    bucket = np.searchsorted(edges, lengths, side="left")
    rows = [{"history": label, "users": int((bucket == b).sum()), **user_ranks.metrics_from_ranks(ranks[bucket == b])}
            for b, label in enumerate(bucket_labels(edges)) if (bucket == b).any()]
    return rows + [{"history": "all", "users": len(ranks), **user_ranks.metrics_from_ranks(ranks)}]


def runs_by_length(roots: list[str], cfg: dict, iterations: int, edges: list[int], say=print) -> list[list[list[dict]]]:
    """Each run's first `iterations` models (`cfg`: the runs' one setting) on test, by
    history length: [run][iteration][bucket]. From the per-user ranks the loop records;
    models of runs from before they were recorded are evaluated again."""
    history = None
    out = []
    for root in roots:
        out.append([])
        for k in range(iterations):
            recorded = user_ranks.ranks_path(Path(root) / f"iter{k}", cfg["student"])
            if recorded.exists():
                ranks, lengths = user_ranks.load(recorded)
            else:
                ranks, lengths = rank_again(Path(root) / f"iter{k}" / f"{cfg['student']}.pt", cfg, say)
            if history is None:
                history = lengths
            elif not np.array_equal(lengths, history):
                raise RsirError(f"{recorded.parent}: its test users differ from {roots[0]}'s (compare runs of one dataset)")
            out[-1].append(metrics_by_length(ranks, lengths, edges))
    return out


def rank_again(path: Path, cfg: dict, say) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint's test ranks and its users' history lengths, evaluated now."""
    from .checkpoint import load_model   # torch: only for runs without recorded ranks
    from .data import check_trained_on, open_dataset
    from .evaluate import rank_users
    net, payload = load_model(path)
    ds = open_dataset(cfg["data"], max_len=cfg["max_len"], item_tokens=payload["item_tokens"])
    check_trained_on(payload.get("data", {}), ds, str(path), advice="compare runs of one dataset")
    inputs, targets = ds.eval_inputs("test")
    say(f"{path}: test by history length (evaluated again: no recorded ranks)")
    return rank_users(net, inputs, targets), np.array([len(s) for s in inputs])


def summarise(roots: list[str], per_run: list[list[list[dict]]], base: int = 0) -> dict:
    """Per iteration but `base` and per bucket: the runs' mean metrics at iteration `base`
    and at it, the gain of the means, and each run's own gain with its paired 95% interval."""
    from .replicates import paired_interval
    iterations = []
    for i in (i for i in range(len(per_run[0])) if i != base):
        buckets = []
        for b, row in enumerate(per_run[0][base]):
            then = {k: statistics.mean(r[base][b][k] for r in per_run) for k in CHANGE_KEYS}
            now = {k: statistics.mean(r[i][b][k] for r in per_run) for k in CHANGE_KEYS}
            own = {k: [gain(r[i][b], r[base][b], k) for r in per_run] for k in CHANGE_KEYS}
            buckets.append({"history": row["history"], "users": row["users"], "mean_base": then, "mean": now,
                            "gain_of_means": {k: gain(now, then, k) for k in CHANGE_KEYS}, "own_gains": own,
                            "own_gain_ci95": {k: list(paired_interval(g)) for k, g in own.items()}})
        iterations.append({"iteration": i, "buckets": buckets})
    return {"runs": roots, "base_iteration": base, "iterations": iterations}


def markdown(summary: dict, edges: list[int]) -> str:
    lines = [f"Test metrics by the user's history length (items before the test target; "
             f"--by-length {','.join(map(str, edges))}), over {len(summary['runs'])} runs:"]
    for it in summary["iterations"]:
        lines += ["", f"| history | users | R@10 iter {summary['base_iteration']} -> {it['iteration']} (means) | ΔR@10 of means | "
                      "each run's own ΔR@10, mean [95% CI] | ΔN@10 of means | own ΔN@10, mean [95% CI] |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for b in it["buckets"]:
            ci = {k: f"{m:+.1f}% [{m - h:+.1f}, {m + h:+.1f}]" for k, (m, h) in b["own_gain_ci95"].items()}
            lines.append(f"| {b['history']} | {b['users']:,} | {b['mean_base']['recall@10']:.4f} -> "
                         f"{b['mean']['recall@10']:.4f} | {b['gain_of_means']['recall@10']:+.1f}% | {ci['recall@10']} | "
                         f"{b['gain_of_means']['ndcg@10']:+.1f}% | {ci['ndcg@10']} |")
    return "\n".join(lines) + "\n"
