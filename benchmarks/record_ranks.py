"""Record the per-user test ranks of loop runs from before session 32, which the loop
now records itself (iter_k/test-ranks-<model>.npz), so that their reports' successors and
`compare --by-length` read them instead of evaluating every model again. A model's ranks
are written only where they give its recorded test metrics exactly (the same host type
and thread count as the run; otherwise the float path may move a rank).

    RSIR_THREADS=1 python benchmarks/record_ranks.py runs/beauty-loop runs/beauty-loop-s1 ..."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rsir_trt import user_ranks
from rsir_trt.user_groups import rank_again


def main(runs: list[str]) -> int:
    differ = 0
    for run in map(Path, runs):
        cfg = json.loads((run / "config.json").read_text())
        for metrics in sorted(run.glob(f"iter*/metrics-{cfg['student']}.json")):
            it, kind = metrics.parent, cfg["student"]
            if user_ranks.ranks_path(it, kind).exists():
                continue
            ranks, history = rank_again(it / f"{kind}.pt", cfg, say=lambda msg: None)
            recorded = json.loads(metrics.read_text())["test"]
            now = user_ranks.metrics_from_ranks(ranks)
            if all(now[k] == v for k, v in recorded.items()):
                user_ranks.save(user_ranks.ranks_path(it, kind), ranks, history)
                print(f"{it}: recorded (metrics exact)", flush=True)
            else:
                differ += 1
                print(f"{it}: not recorded, its ranks now give other metrics than the run's", flush=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
