"""The loop's report: per-iteration metrics, data growth, generation cost, and a plot."""
from __future__ import annotations

import json
from pathlib import Path

from . import user_ranks
from .atomic import atomic_path, write_json, write_text

KEYS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
CHANGE_KEYS = ("recall@10", "ndcg@10")  # the changes over iteration 0 that the comparisons report
HISTORY_EDGES = [5, 10, 20]  # the report's history-length buckets: up to 5 items, 6-10, 11-20, 21+
POPULARITY_EDGES = [100, 1000]  # its target-popularity buckets: the 100 most trained items, 101-1000, the tail
SELECT_BY = "ndcg@20"  # the validation metric training stops on; the report picks an iteration with it too


def collect(root: Path, student: str) -> list[dict]:
    rows = []
    k = 0
    while (root / f"iter{k}" / f"metrics-{student}.json").exists():
        m = json.loads((root / f"iter{k}" / f"metrics-{student}.json").read_text())
        gen_path = root / f"iter{k - 1}" / "generation.json" if k else None
        gen = json.loads(gen_path.read_text()) if gen_path and gen_path.exists() else {}
        rows.append({"iteration": k, "valid": {x: m["valid"][x] for x in KEYS},
                     "test": {x: m["test"][x] for x in KEYS}, "train_sequences": m["train_sequences"],
                     "train_interactions": m["train_interactions"], "train_seconds": m["train_seconds"],
                     "best_epoch": m["best_epoch"], "generated_kept": gen.get("acquisition", gen).get("kept", 0),   # what the round added
                     "generation_seconds": gen.get("seconds", 0.0),
                     "generation_seq_per_s": gen.get("sequences_per_s", 0.0)})
        k += 1
    return rows


def selected(rows: list[dict]) -> int:
    """The iteration a user should keep, chosen without looking at test: the highest
    validation NDCG@20, the earliest on ties. RSIR's rounds do not improve monotonically."""
    return max(rows, key=lambda r: (r["valid"][SELECT_BY], -r["iteration"]))["iteration"]


def gain(test: dict, base: dict, key: str) -> float:
    """Relative change of test[key] over iteration 0's, in percent."""
    return 100 * (test[key] / base[key] - 1) if base[key] else 0.0


def markdown(rows: list[dict]) -> str:
    base = rows[0]["test"]
    lines = ["| iter | train seqs | interactions | valid R@10 | valid N@10 | valid N@20 | test R@10 | test N@10 | test R@20 | test N@20 | ΔR@10 | ΔN@10 | gen kept | gen s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        v, t = r["valid"], r["test"]
        lines.append(f"| {r['iteration']} | {r['train_sequences']:,} | {r['train_interactions']:,} | "
                     f"{v['recall@10']:.4f} | {v['ndcg@10']:.4f} | {v['ndcg@20']:.4f} | {t['recall@10']:.4f} | {t['ndcg@10']:.4f} | "
                     f"{t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {gain(t, base, 'recall@10'):+.1f}% | {gain(t, base, 'ndcg@10'):+.1f}% | {r['generated_kept']:,} | "
                     f"{r['generation_seconds']:.1f} |")
    k = selected(rows)
    t = rows[k]["test"]
    lines.append(f"\nSelected by validation {SELECT_BY} (test unseen): iteration {k}, test R@10 {t['recall@10']:.4f} "
                 f"({gain(t, base, 'recall@10'):+.1f}% over iteration 0), "
                 f"N@10 {t['ndcg@10']:.4f}.")
    return "\n".join(lines) + "\n"


def test_users(root: Path, student: str, iterations: int, target_rank=None) -> dict | None:
    """From the recorded per-user test ranks (runs since session 32; None for older runs):
    each iteration's change against iteration 0 with its 95% interval over the test users,
    and the test metrics by history length (and by `target_rank`, each test target's
    popularity rank, when given)."""
    from .user_groups import POPULARITY, metrics_by_group
    paths = [user_ranks.ranks_path(root / f"iter{k}", student) for k in range(iterations)]
    if not all(p.exists() for p in paths):
        return None
    loaded = [user_ranks.load(p) for p in paths]
    base, history = loaded[0]
    changes = [{key: list(user_ranks.change_interval(ranks, base, key)) for key in CHANGE_KEYS}
               for ranks, _ in loaded[1:]]
    out = {"change_ci95_over_users": changes, "history_edges": HISTORY_EDGES,
           "by_length": [metrics_by_group(ranks, history, HISTORY_EDGES) for ranks, _ in loaded]}
    if target_rank is not None:
        out.update(popularity_edges=POPULARITY_EDGES,
                   by_popularity=[metrics_by_group(ranks, target_rank, POPULARITY_EDGES, POPULARITY.key) for ranks, _ in loaded])
    return out


def users_markdown(users: dict) -> str:
    lines = ["\nTest change against iteration 0 with its 95% interval over the test users (paired; the test "
             "set's sampling noise only, not the spread over training seeds: `compare` over `--seeds` gives that):\n",
             "| iter | ΔR@10 [95% CI] | ΔN@10 [95% CI] |", "|---:|---:|---:|"]
    for k, ch in enumerate(users["change_ci95_over_users"], start=1):
        cells = [f"{m:+.1f}% [{m - h:+.1f}, {m + h:+.1f}]" for m, h in (ch[key] for key in CHANGE_KEYS)]
        lines.append(f"| {k} | {' | '.join(cells)} |")
    from .user_groups import HISTORY, POPULARITY
    for g in (HISTORY, POPULARITY):
        per_it = users.get(g.section)
        if not per_it:   # reports from before session 52 have no popularity buckets
            continue
        lines += [f"\nTest R@10 by {g.title}, change against iteration 0:\n",
                  f"| {g.column} | users | " + " | ".join(f"iter {k}" for k in range(len(per_it))) + " |",
                  "|---|---:|" + "---:|" * len(per_it)]
        for b, row in enumerate(per_it[0]):
            change = lambda now: f" ({gain(now, row, 'recall@10'):+.1f}%)" if row["recall@10"] else ""  # none from 0
            cells = [f"{row['recall@10']:.4f}"] + [f"{it[b]['recall@10']:.4f}{change(it[b])}" for it in per_it[1:]]
            lines.append(f"| {row[g.key]} | {row['users']:,} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    its = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, split in zip(axes, ("valid", "test")):
        for key in KEYS:
            ax.plot(its, [r[split][key] for r in rows], marker="o", label=key)
        ax.set_title(f"{split}")
        ax.set_xlabel("iteration")
        ax.set_xticks(its)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(root: Path, cfg, target_rank=None) -> dict:
    """`target_rank`: each test user's target's popularity rank, for the table by popularity."""
    rows = collect(Path(root), cfg.student)
    title = f"RSIR on {cfg.data or 'ml-100k'}: teacher {cfg.teacher}, student {cfg.student}"
    report = {"title": title, "iterations": rows, "selected_iteration": selected(rows), "selected_by": f"valid {SELECT_BY}"}
    users = test_users(Path(root), cfg.student, len(rows), target_rank)
    if users:
        report["test_users"] = users
    write_json(root / "report.json", report)
    write_text(root / "report.md", f"# {title}\n\n" + markdown(rows) + (users_markdown(users) if users else ""))
    plot(rows, root / "metrics.png", title)
    return report
