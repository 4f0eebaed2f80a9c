"""Session 39's check of a loop's models: does a second, lower learning rate lift them?

Loads iteration K's model of a loop run, trains it further on the real training data alone
(the loop's own training settings, at --lr, fresh Adam, the same early stopping), and prints
one JSON line: validation NDCG@20 and test Recall/NDCG@10 before and after. On iteration 0
this is what `--lr-drops 1` adds to a baseline; on a later iteration, a successor polished on
the real data (--lr-drops would polish it on its own training set, synthetic rows included).

    RSIR_THREADS=1 python benchmarks/second_stage.py RUN K [--lr 5e-4]"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rsir_trt.checkpoint import load_model
from rsir_trt.data import open_dataset
from rsir_trt.evaluate import evaluate
from rsir_trt.loop import read_config
from rsir_trt.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("k", type=int, help="iteration whose model is trained further")
    ap.add_argument("--lr", type=float, default=5e-4)
    args = ap.parse_args()
    cfg = read_config(Path(args.run) / "config.json")
    model, ckpt = load_model(f"{args.run}/iter{args.k}/{cfg.student}.pt")
    data = open_dataset(cfg.data, max_len=cfg.max_len, item_tokens=ckpt["item_tokens"])
    before_valid, before_test = evaluate(model, data, "valid"), evaluate(model, data, "test")
    result = train(model, data, TrainConfig(**{**cfg.train, "lr": args.lr, "seed": cfg.seed + 100 + args.k}))
    after_test = evaluate(model, data, "test")
    print(json.dumps({"run": args.run, "k": args.k, "lr": args.lr, "best_epoch": result.best_epoch,
                      "valid_ndcg@20": [before_valid["ndcg@20"], result.valid["ndcg@20"]],
                      "test_recall@10": [before_test["recall@10"], after_test["recall@10"]],
                      "test_ndcg@10": [before_test["ndcg@10"], after_test["ndcg@10"]]}))


if __name__ == "__main__":
    main()
