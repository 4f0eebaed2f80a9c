"""Training step time by batching, in one run on the same model settings: length batches,
random batches encoded in one call, and random batches encoded in length groups
(rsir_trt.train.encode_real, the default), for both losses.

    python benchmarks/batching_speed.py --data sports --threads 2 --layout kang"""
from __future__ import annotations

import argparse
import time

import torch

import rsir_trt.train as train_mod
from rsir_trt.data import open_dataset
from rsir_trt.models import ModelConfig, create_model
from rsir_trt.system import configure_cpu
from rsir_trt.train import TrainConfig, batches, next_item_loss

SETTINGS = [("length", 1), ("random", 1), ("random", train_mod.ENCODE_PARTS)]


def step_ms(data, chosen, loss, batching, layout) -> float:
    model = create_model(ModelConfig(num_items=data.num_items, layout=layout), seed=0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    cfg, gen = TrainConfig(loss=loss, batching=batching), torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for batch in chosen:
        value = next_item_loss(model, batch, cfg, gen)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    return (time.perf_counter() - start) / len(chosen) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="sports")
    ap.add_argument("--layout", default="kang")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    configure_cpu()
    torch.set_num_threads(args.threads)
    data = open_dataset(args.data)
    seqs = [s[-(ModelConfig().max_len + 1):] for s in data.training_set() if len(s) >= 2]
    for r in range(args.rounds):
        for loss in ("ce", "sampled"):
            for batching, parts in SETTINGS:
                chosen = list(batches(seqs, 128, torch.Generator().manual_seed(r), batching))[: args.batches]
                real = sum(int((b[:, 1:] > 0).sum()) for b in chosen)
                train_mod.ENCODE_PARTS = parts
                ms = step_ms(data, chosen, loss, batching, args.layout)
                print(f"round {r} {loss:8s} {batching:7s} encoder calls {parts}  {ms:6.1f} ms/step"
                      f"  ({real / len(chosen):.0f} real positions per batch)", flush=True)


if __name__ == "__main__":
    main()
