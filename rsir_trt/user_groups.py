"""Where a gain comes from: test metrics of groups of test users.

The overall gain averages very different users, so the comparison of loops over seeds,
`evaluate` and every loop's report split the test users into buckets of one integer per user:
- history: the items before the test target (`--by-length 5,10,20`). RSIR seeds its
  synthetic sequences from real users, and the paper's case for it is sparse histories.
- target popularity: the test target's rank by interactions in the real training data,
  1 = the most (`--by-popularity 100,1000`: head, torso, tail). A model's own sequences
  lean to the items it already ranks high, so a gain can sit in the head alone."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import user_ranks
from .errors import RsirError
from .report import CHANGE_KEYS, gain


@dataclass(frozen=True)
class Grouping:
    key: str      # the bucket label's field in rows and JSON
    section: str  # the JSON field of a summary or metrics that holds the buckets
    option: str   # the option that gives the buckets' edges
    noun: str     # what the edges count
    column: str   # the buckets' column heading
    title: str    # what the buckets are, for a table's caption


HISTORY = Grouping("history", "by_length", "--by-length", "history lengths", "history",
                   "the user's history length (items before the test target)")
POPULARITY = Grouping("target_rank", "by_popularity", "--by-popularity", "popularity ranks", "target rank",
                      "the target's popularity rank (1 = the item with the most real training interactions)")


def parse_edges(text: str, grouping: Grouping = HISTORY) -> list[int]:
    """'5,10,20' -> [5, 10, 20]: the buckets' upper ends, increasing, >= 1."""
    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RsirError(f"{grouping.option}: {text!r} is not a comma-separated list of integers") from None
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise RsirError(f"{grouping.option}: give increasing {grouping.noun} >= 1, got {text!r}")
    return edges


def training_counts(data) -> np.ndarray:
    """Each item id's interactions in the real training prefixes (validation and test
    targets and synthetic rows not counted)."""
    return np.bincount(np.concatenate([np.asarray(s) for s in data.train_sequences()] or [np.zeros(0, int)]),
                       minlength=data.num_items)


def popularity_ranks(data) -> np.ndarray:
    """Each item id's rank by its training interactions (`training_counts`): 1 = the most,
    ties by id."""
    counts = training_counts(data)
    ranks = np.empty(data.num_items, dtype=np.int64)
    ranks[np.argsort(-counts[1:], kind="stable") + 1] = np.arange(1, data.num_items)
    ranks[0] = data.num_items   # padding: never a target
    return ranks


def target_popularity(data, split: str = "test") -> np.ndarray:
    """The popularity rank of each user's `split` target."""
    return popularity_ranks(data)[data.eval_inputs(split)[1]]


def bucket_labels(edges: list[int]) -> list[str]:
    """[5, 10] -> ['1-5', '6-10', '11+'] (one item buckets read '6')."""
    lows = [1] + [e + 1 for e in edges]
    labels = [f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in zip(lows, edges)]
    return labels + [f"{lows[-1]}+"]


def metrics_by_group(ranks: np.ndarray, values: np.ndarray, edges: list[int], key: str = HISTORY.key) -> list[dict]:
    """The metrics of the users in each bucket of `values` (<= edges[0], ..., > edges[-1]),
    empty buckets left out, then all users together."""
    ranks, values = np.asarray(ranks), np.asarray(values)
    bucket = np.searchsorted(edges, values, side="left")
    rows = [{key: label, "users": int((bucket == b).sum()), **user_ranks.metrics_from_ranks(ranks[bucket == b])}
            for b, label in enumerate(bucket_labels(edges)) if (bucket == b).any()]
    return rows + [{key: "all", "users": len(ranks), **user_ranks.metrics_from_ranks(ranks)}]


def runs_test_ranks(roots: list[str], cfg: dict, iterations: int, say=print) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """The per-user test ranks of each run's first `iterations` models (`cfg`: the runs'
    one setting), [run][iteration], and the test users' history lengths. From the ranks
    the loop records; models of runs from before they were recorded are evaluated again."""
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
            out[-1].append(ranks)
    return out, history


def group_values(grouping: Grouping, root: str, cfg: dict, history: np.ndarray) -> np.ndarray:
    """Each test user's value to bucket by: its history length or its target's popularity rank."""
    return history if grouping == HISTORY else run_target_popularity(Path(root), cfg)


def run_target_popularity(root: Path, cfg: dict) -> np.ndarray:
    """The popularity rank of each test user's target in the data of loop run `root`."""
    from .checkpoint import load   # torch: only to read the item ids the run was trained with
    from .data import open_dataset
    ds = open_dataset(cfg["data"], max_len=cfg["max_len"], item_tokens=load(root / "iter0" / f"{cfg['student']}.pt")["item_tokens"])
    return target_popularity(ds)


def rank_again(path: Path, cfg: dict, say) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint's test ranks and its users' history lengths, evaluated now."""
    from .checkpoint import load_model   # torch: only for runs without recorded ranks
    from .data import check_trained_on, open_dataset
    from .evaluate import rank_users
    net, payload = load_model(path)
    ds = open_dataset(cfg["data"], max_len=cfg["max_len"], item_tokens=payload["item_tokens"])
    check_trained_on(payload.get("data", {}), ds, str(path), advice="compare runs of one dataset")
    inputs, targets = ds.eval_inputs("test")
    say(f"{path}: test ranks evaluated again (no recorded ranks)")
    return rank_users(net, inputs, targets), np.array([len(s) for s in inputs])


def summarise(roots: list[str], per_run: list[list[list[dict]]], base: int = 0, key: str = HISTORY.key) -> dict:
    """Per iteration but `base` and per bucket: the runs' mean metrics at iteration `base`
    and at it, the gain of the means, and each run's own gain with its paired 95% interval
    (None where a base is 0: no relative change from 0; a small bucket can hit no target)."""
    from .replicates import paired_interval
    iterations = []
    for i in (i for i in range(len(per_run[0])) if i != base):
        buckets = []
        for b, row in enumerate(per_run[0][base]):
            then = {k: statistics.mean(r[base][b][k] for r in per_run) for k in CHANGE_KEYS}
            now = {k: statistics.mean(r[i][b][k] for r in per_run) for k in CHANGE_KEYS}
            own = {k: [gain(r[i][b], r[base][b], k) if r[base][b][k] else None for r in per_run] for k in CHANGE_KEYS}
            buckets.append({key: row[key], "users": row["users"], "mean_base": then, "mean": now,
                            "gain_of_means": {k: gain(now, then, k) if then[k] else None for k in CHANGE_KEYS},
                            "own_gains": own,
                            "own_gain_ci95": {k: None if None in g else list(paired_interval(g)) for k, g in own.items()}})
        iterations.append({"iteration": i, "buckets": buckets})
    return {"runs": roots, "base_iteration": base, "iterations": iterations}


def markdown(summary: dict, edges: list[int], grouping: Grouping = HISTORY) -> str:
    lines = [f"Test metrics by {grouping.title}; {grouping.option} {','.join(map(str, edges))}; "
             f"over {len(summary['runs'])} runs:"]
    for it in summary["iterations"]:
        lines += ["", f"| {grouping.column} | users | R@10 iter {summary['base_iteration']} -> {it['iteration']} (means) | ΔR@10 of means | "
                      "each run's own ΔR@10, mean [95% CI] | ΔN@10 of means | own ΔN@10, mean [95% CI] |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for b in it["buckets"]:
            ci = {k: "-" if c is None else f"{c[0]:+.1f}% [{c[0] - c[1]:+.1f}, {c[0] + c[1]:+.1f}]"
                  for k, c in b["own_gain_ci95"].items()}
            of_means = {k: "-" if g is None else f"{g:+.1f}%" for k, g in b["gain_of_means"].items()}
            lines.append(f"| {b[grouping.key]} | {b['users']:,} | {b['mean_base']['recall@10']:.4f} -> "
                         f"{b['mean']['recall@10']:.4f} | {of_means['recall@10']} | {ci['recall@10']} | "
                         f"{of_means['ndcg@10']} | {ci['ndcg@10']} |")
    return "\n".join(lines) + "\n"
