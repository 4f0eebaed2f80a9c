"""Training-side speed, each change against its textbook version in one run, on the
same batches / users:
1. one full-softmax training step (forward, backward, Adam): the fused loss
   (rsir_trt.softmax_loss) vs F.cross_entropy(h @ W.T, t);
2. one full-ranking validation pass: rsir_trt.evaluate (history masked in place, int32
   counts) vs a copy-and-mask version; the ranks must be identical.

    python benchmarks/train_speed.py --data sports --threads 2 [--glibc-default]

--glibc-default skips rsir_trt.system.keep_freed_memory (run both ways to see its effect)."""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import rsir_trt.evaluate as evaluate_mod
import rsir_trt.train as train_mod
from rsir_trt.data import open_dataset
from rsir_trt.models import ModelConfig, create_model
from rsir_trt.system import keep_freed_memory
from rsir_trt.train import TrainConfig, batches, next_item_loss


def textbook_loss(h, W, t):
    z = h @ W.T
    z[:, 0] = float("-inf")
    return F.cross_entropy(z, t)


def textbook_ranks(scores, targets, history, overwrite=False):
    target_score = scores.gather(1, targets[:, None])
    scores = scores.scatter(1, history, float("-inf"))
    scores[:, 0] = float("-inf")
    return (scores > target_score).sum(1)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def train_steps(data, chosen, cfg) -> float:
    model = create_model(ModelConfig(num_items=data.num_items), seed=0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    for b in chosen:
        loss = next_item_loss(model, b, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="sports")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--glibc-default", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.glibc_default:
        keep_freed_memory()
    data = open_dataset(args.data)
    cfg = TrainConfig(loss="ce")
    keep = ModelConfig().max_len + 1  # what train() feeds the model
    seqs = [s[-keep:] for s in data.training_set() if len(s) >= 2]
    chosen = list(batches(seqs, cfg.batch_size, torch.Generator().manual_seed(0)))[: args.batches]
    model = create_model(ModelConfig(num_items=data.num_items), seed=0).eval()
    fused, ranks = train_mod.full_softmax_ce, evaluate_mod.target_ranks
    step = {"F.cross_entropy": [], "fused": []}
    rank = {"copy and mask": [], "rsir_trt.evaluate": []}
    for _ in range(args.rounds):
        for name, loss_fn in zip(step, (textbook_loss, fused)):
            train_mod.full_softmax_ce = loss_fn
            s, last = timed(lambda: train_steps(data, chosen, cfg))
            step[name].append(s / len(chosen) * 1000)
            print(f"step  {name:18s} {step[name][-1]:7.0f} ms/batch  loss after {len(chosen)} steps {last:.6f}")
        results = []
        for name, rank_fn in zip(rank, (textbook_ranks, ranks)):
            evaluate_mod.target_ranks = rank_fn
            s, m = timed(lambda: evaluate_mod.evaluate(model, data, "valid"))
            rank[name].append(s)
            results.append(m)
            print(f"valid {name:18s} {s:7.2f} s")
        assert results[0] == results[1], "evaluation changed the metrics"
    train_mod.full_softmax_ce, evaluate_mod.target_ranks = fused, ranks
    b_step = {k: min(v) for k, v in step.items()}
    b_rank = {k: min(v) for k, v in rank.items()}
    alloc = "glibc default allocator" if args.glibc_default else "keep_freed_memory"
    print(f"{args.data} (V={data.num_items}), {args.threads} threads, {alloc}:")
    print(f"  full-softmax step: {b_step['F.cross_entropy']:.0f} -> {b_step['fused']:.0f} ms/batch "
          f"({b_step['F.cross_entropy'] / b_step['fused']:.2f}x)")
    print(f"  validation ranking: {b_rank['copy and mask']:.2f} -> {b_rank['rsir_trt.evaluate']:.2f} s "
          f"({b_rank['copy and mask'] / b_rank['rsir_trt.evaluate']:.2f}x), identical metrics")


if __name__ == "__main__":
    main()
