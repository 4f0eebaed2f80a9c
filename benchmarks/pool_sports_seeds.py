"""The README's Sports figure over every seed of the issue's setting, from the per-run tables
in docs/experiments.md (rows `| Sports sN | iter | ...`; the run directories of earlier
sessions are gone, their tables are what remains): per round the test R@10 of the seeds'
means against iteration 0, and the mean of each seed's own printed change with its paired
95% t-interval (`rsir-trt compare`'s statistic).

    python benchmarks/pool_sports_seeds.py [docs/experiments.md]"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import numpy as np

from rsir_trt.replicates import paired_interval

ROW = re.compile(r"\| Sports s(\d+) \| ([0-3]) \|")   # keyed rows only: ablations name themselves
# cells of a row split on "|" (cell 0 is empty): the run tables' shared header
TEST_R10, TEST_N10, OWN_R10, OWN_N10 = 8, 9, 12, 13


def read_tables(path: Path) -> dict[int, dict[int, list[str]]]:
    rows: dict[int, dict[int, list[str]]] = {}
    for line in path.read_text().splitlines():
        if m := ROW.match(line):
            rows.setdefault(int(m[1]), {})[int(m[2])] = [c.strip().strip("*%") for c in line.split("|")]
    return {seed: its for seed, its in rows.items() if len(its) == 4}


def main(path: Path) -> None:
    rows = read_tables(path)
    seeds = sorted(rows)
    r = {s: [float(rows[s][it][TEST_R10]) for it in range(4)] for s in seeds}
    n = {s: [float(rows[s][it][TEST_N10]) for it in range(4)] for s in seeds}
    r0 = [r[s][0] for s in seeds]
    print(f"{len(seeds)} seeds {seeds}; iteration 0 R@10 {statistics.mean(r0):.4f} +- {statistics.stdev(r0):.4f}")
    for it in (1, 2, 3):
        ri = [r[s][it] for s in seeds]
        of_means = 100 * (statistics.mean(ri) / statistics.mean(r0) - 1)
        of_means_n = 100 * (statistics.mean(n[s][it] for s in seeds) / statistics.mean(n[s][0] for s in seeds) - 1)
        own, half = paired_interval([float(rows[s][it][OWN_R10]) for s in seeds])
        own_n, half_n = paired_interval([float(rows[s][it][OWN_N10]) for s in seeds])
        print(f"round {it}: R@10 {statistics.mean(ri):.4f} +- {statistics.stdev(ri):.4f}, of the means {of_means:+.1f}%, "
              f"own {own:+.1f}% [{own - half:+.1f}, {own + half:+.1f}]; N@10 of the means {of_means_n:+.1f}%, "
              f"own {own_n:+.1f}% [{own_n - half_n:+.1f}, {own_n + half_n:+.1f}]")
    r3 = [r[s][3] for s in seeds]
    print(f"round 3 against iteration 0: r = {np.corrcoef(r0, r3)[0, 1]:.2f}; "
          f"rounds below their own iteration 0: {[(s, it) for s in seeds for it in (1, 2, 3) if r[s][it] < r[s][0]]}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/experiments.md"))
