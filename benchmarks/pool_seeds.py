"""The README's pooled RSIR figures over every seed of the issue's setting, from the per-run
tables in docs/experiments.md (the run directories of earlier sessions are gone; their
tables are what remains): per round the test R@10 / N@10 of the seeds' means against
iteration 0 (from the tables' 4-digit values), and the mean of each seed's own change as
printed (from full precision) with its paired 95% t-interval (`rsir-trt compare`'s statistic);
then the same for the iteration each loop's validation N@20 keeps (the model a user deploys).

A seed counts once. Some seeds ran more than one loop: a rerun on another host type that
repeated the first to every printed digit (Beauty seeds 3-5) is the same loop; one that
shares the first's iteration 0 and then drifts (Beauty seeds 0-2, across host types) is no
independent draw of the seed either, so a seed's loops are averaged before pooling.

`sports-drops` / `beauty-drops` pool the loops run with `--lr-drops 1` (rows labelled by their
run directory, `sports-drops-sN`) the same way, then set them against the same seeds' loops
without the option: each model trained out against the constant-rate one it replaces.

    python benchmarks/pool_seeds.py sports|beauty|sports-drops|beauty-drops [docs/experiments.md]"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import numpy as np

from rsir_trt.replicates import paired_interval

# cells of a row split on "|" (cell 0 is empty): the run tables' shared header
# | run | iter | train seqs | kept | epochs (best) | training | valid N@20 | test R@10 | test N@10 | test R@20 | test N@20 | ΔR@10 | ΔN@10 |
LABEL, ITER, VALID_N20, TEST_R10, TEST_N10, OWN_R10, OWN_N10 = 1, 2, 7, 8, 9, 12, 13

# Beauty's loops: (seed, section heading prefix, row label per iteration 0..3). Keyed by
# hand because the earlier sessions labelled their rows each its own way.
BEAUTY = [
    (0, "### Session 20 ", ["s0, first item (pinned)"] * 4),
    (0, "### Session 24 ", ["Beauty s0"] + ["s0, m=5"] * 3),
    (1, "### Random batches (2026-11-24): three Beauty", ["Beauty s1"] * 4),
    (1, "### Session 24 ", ["Beauty s1"] * 4),
    (2, "### Random batches (2026-11-24): three Beauty", ["Beauty s2"] * 4),
    (2, "### Session 24 ", ["Beauty s2"] * 4),
    (3, "### Session 26 (2026-12-05): Beauty", ["Beauty s3"] * 4),  # session 20's seed 3 (its text) to the digit
    (4, "### Session 22 ", ["s4"] * 4),
    (4, "### Session 26 (2026-12-05): Beauty", ["Beauty s4"] * 4),
    (5, "### Session 22 ", ["s5"] * 4),
    (5, "### Session 26 (2026-12-05): Beauty", ["Beauty s5"] * 4),
    (6, "### Session 26 (2026-12-05): Beauty", ["Beauty s6"] * 4),
    *((s, "### Session 34 ", [f"Beauty s{s}"] * 4) for s in (7, 8, 9, 10)),
]
SPORTS_ROW = re.compile(r"Sports s(\d+)$")  # keyed rows only: ablations name themselves otherwise
DROPS_ROW = re.compile(r"(sports|beauty)-drops-s(\d+)$")
DATASETS = ("sports", "beauty", "sports-drops", "beauty-drops")


def read_rows(path: Path) -> dict[tuple[str, str, int], tuple[float, ...]]:
    """(section heading, row label, iteration) -> (test R@10, test N@10, own ΔR@10 %, own ΔN@10 %,
    valid N@20) of every run table row (the changes of iteration 0 are 0)."""
    rows, section = {}, ""
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            section = line
            continue
        cells = [c.strip().strip("*%") for c in line.split("|")]
        if len(cells) > OWN_N10 and cells[ITER] in "0123" and cells[ITER]:
            try:
                rows[(section, cells[LABEL], int(cells[ITER]))] = tuple(
                    0.0 if cells[c] == "-" else float(cells[c])
                    for c in (TEST_R10, TEST_N10, OWN_R10, OWN_N10, VALID_N20))
            except ValueError:
                continue
    return rows


def loops_of(data: str, rows) -> dict[int, list[np.ndarray]]:
    """seed -> its loops, each a 4 x 5 array (iterations 0..3; R@10, N@10, own ΔR@10, own ΔN@10,
    valid N@20)."""
    seeds: dict[int, list[np.ndarray]] = {}
    if data.endswith("-drops"):
        for (section, label, it), _ in rows.items():
            if it == 0 and (m := DROPS_ROW.match(label)) and data == f"{m[1]}-drops":
                seeds.setdefault(int(m[2]), []).append(np.array([rows[(section, label, k)] for k in range(4)]))
        return seeds
    if data == "sports":
        for (section, label, it), _ in rows.items():
            if it == 0 and (m := SPORTS_ROW.match(label)):
                seeds.setdefault(int(m[1]), []).append(np.array([rows[(section, label, k)] for k in range(4)]))
        return seeds
    for seed, heading, labels in BEAUTY:
        section = next(s for (s, _, _) in rows if s.startswith(heading))
        seeds.setdefault(seed, []).append(np.array([rows[(section, labels[k], k)] for k in range(4)]))
    return seeds


def distinct(loops: list[np.ndarray]) -> list[np.ndarray]:
    """A seed's loops less exact repeats (a rerun that matched the first to every digit)."""
    return [x for i, x in enumerate(loops) if not any(np.array_equal(x, y) for y in loops[:i])]


def seed_mean(loops: list[np.ndarray]) -> np.ndarray:
    """A seed's distinct loops averaged, own changes included."""
    return np.mean(distinct(loops), axis=0)


def against_constant_rate(data: str, rows, drops: dict[int, np.ndarray]) -> None:
    """The same seeds with and without `--lr-drops`: test R@10 from the tables' 4-digit values."""
    plain = {s: seed_mean(loops) for s, loops in loops_of(data.removesuffix("-drops"), rows).items()}
    common = sorted(set(drops) & set(plain))
    name = {0: "iteration 0", 3: "round 3"}
    for with_it, without_it in ((0, 0), (3, 3), (3, 0)):
        change = [100 * (drops[s][with_it, 0] / plain[s][without_it, 0] - 1) for s in common]
        m, h = paired_interval(change)
        print(f"{name[with_it]} with drops over {name[without_it]} without, seeds {common}: "
              f"R@10 {m:+.1f}% [{m - h:+.1f}, {m + h:+.1f}] ({', '.join(f'{c:+.1f}' for c in change)})")


def main(data: str, path: Path) -> None:
    rows = read_rows(path)
    seeds = loops_of(data, rows)
    per_seed, distinct_loops = {}, {}
    for seed, loops in sorted(seeds.items()):
        unique = distinct_loops[seed] = distinct(loops)
        if len(loops) > 1:
            print(f"seed {seed}: {len(loops)} loops, {len(unique)} distinct"
                  + ("" if len(unique) == 1 else ", averaged: own R@10 by round 3 "
                     + ", ".join(f"{x[3, 2]:+.1f}%" for x in unique)))
        per_seed[seed] = seed_mean(loops)
    order = sorted(per_seed)
    value = np.array([per_seed[s][:, :2] for s in order])   # seeds x iterations x (R@10, N@10)
    own = np.array([per_seed[s][:, 2:] for s in order])
    r0 = value[:, 0, 0]
    print(f"{data}: {len(order)} seeds {order}; iteration 0 R@10 {r0.mean():.4f} +- {statistics.stdev(r0):.4f}")
    for it in (1, 2, 3):
        ri = value[:, it, 0]
        of_means = 100 * (value[:, it].mean(axis=0) / value[:, 0].mean(axis=0) - 1)
        (r, hr), (n, hn) = (paired_interval(list(own[:, it, j])) for j in (0, 1))
        print(f"round {it}: R@10 {ri.mean():.4f} +- {statistics.stdev(ri):.4f}, of the means {of_means[0]:+.1f}%, "
              f"own {r:+.1f}% [{r - hr:+.1f}, {r + hr:+.1f}] (sd {statistics.stdev(own[:, it, 0]):.1f}); "
              f"N@10 of the means {of_means[1]:+.1f}%, own {n:+.1f}% [{n - hn:+.1f}, {n + hn:+.1f}]")
    # The model a user keeps: each loop's best validation N@20 over iterations 0-3, its own change
    # on test; a seed's loops averaged as above. Equal 4-digit values take the first (Sports seeds
    # 3 and 12, Beauty seed 2: the text confirms seed 3's round 1; the others move the mean < 0.1).
    chosen = {s: [int(np.argmax(x[:, 4])) for x in distinct_loops[s]] for s in order}
    kept = [[np.mean([x[k, j] for x, k in zip(distinct_loops[s], chosen[s])]) for s in order] for j in (2, 3)]
    (r, hr), (n, hn) = (paired_interval(list(v)) for v in kept)
    picks = [k for s in order for k in chosen[s]]
    print(f"validation-selected: loops keeping iteration 0..3: {[picks.count(k) for k in range(4)]}; "
          f"own R@10 {r:+.1f}% [{r - hr:+.1f}, {r + hr:+.1f}], N@10 {n:+.1f}% [{n - hn:+.1f}, {n + hn:+.1f}]")
    print(f"round 3 R@10 against iteration 0 over seeds: r = {np.corrcoef(r0, value[:, 3, 0])[0, 1]:.2f}; "
          f"loops' rounds below their own iteration 0: "
          f"{[(s, it) for s in order for x in distinct_loops[s] for it in (1, 2, 3) if x[it, 0] < x[0, 0]]}")
    if data.endswith("-drops"):
        against_constant_rate(data, rows, per_seed)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in DATASETS:
        sys.exit(f"usage: python benchmarks/pool_seeds.py {'|'.join(DATASETS)} [docs/experiments.md]")
    main(sys.argv[1], Path(sys.argv[2] if len(sys.argv) > 2 else "docs/experiments.md"))
