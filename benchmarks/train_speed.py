"""Training-side speed, each change against its textbook version in one run, on the
same batches / users:
1. one full-softmax training step (forward, backward, Adam): the fused loss
   (rsir_trt.softmax_loss) vs F.cross_entropy(h @ W.T, t), and the fused loss with its
   all-item scores in one matmul instead of column blocks (rsir_trt.wide_matmul);
2. one full-ranking validation pass: rsir_trt.evaluate (history masked in place, int32
   counts, blocked scores) vs a copy-and-mask version and vs one-matmul scores; the
   ranks must be identical.

    python benchmarks/train_speed.py --data sports --threads 2 [--glibc-default]

--glibc-default skips rsir_trt.system.keep_freed_memory (run both ways to see its effect)."""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import rsir_trt.evaluate as evaluate_mod
import rsir_trt.train as train_mod
import rsir_trt.wide_matmul as wide_matmul
from rsir_trt.data import open_dataset
from rsir_trt.models import ModelConfig, create_model
from rsir_trt.system import keep_freed_memory
from rsir_trt.train import BATCHINGS, TrainConfig, batches, next_item_loss


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
    ap.add_argument("--batching", default="length", choices=BATCHINGS,
                    help="which batches to time (the README's table: length, the default until 2026-11-24)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.glibc_default:
        keep_freed_memory()
    data = open_dataset(args.data)
    cfg = TrainConfig(loss="ce")
    keep = ModelConfig().max_len + 1  # what train() feeds the model
    seqs = [s[-keep:] for s in data.training_set() if len(s) >= 2]
    chosen = list(batches(seqs, cfg.batch_size, torch.Generator().manual_seed(0), args.batching))[: args.batches]
    model = create_model(ModelConfig(num_items=data.num_items), seed=0).eval()
    fused, ranks, block = train_mod.full_softmax_ce, evaluate_mod.target_ranks, wide_matmul.BLOCK
    one_call = 10**9  # wide_matmul.BLOCK this large: all-item scores in one matmul
    steps = {"F.cross_entropy": (textbook_loss, block), "fused, one matmul": (fused, one_call),
             "fused": (fused, block)}
    rankings = {"copy and mask": (textbook_ranks, one_call), "one matmul": (ranks, one_call),
                "rsir_trt.evaluate": (ranks, block)}
    step = {k: [] for k in steps}
    rank = {k: [] for k in rankings}
    for _ in range(args.rounds):
        for name, (loss_fn, block_size) in steps.items():
            train_mod.full_softmax_ce, wide_matmul.BLOCK = loss_fn, block_size
            s, last = timed(lambda: train_steps(data, chosen, cfg))
            step[name].append(s / len(chosen) * 1000)
            print(f"step  {name:18s} {step[name][-1]:7.0f} ms/batch  loss after {len(chosen)} steps {last:.6f}")
        results = []
        for name, (rank_fn, block_size) in rankings.items():
            evaluate_mod.target_ranks, wide_matmul.BLOCK = rank_fn, block_size
            s, m = timed(lambda: evaluate_mod.evaluate(model, data, "valid"))
            rank[name].append(s)
            results.append(m)
            print(f"valid {name:18s} {s:7.2f} s")
        assert all(r == results[0] for r in results), "evaluation changed the metrics"
    train_mod.full_softmax_ce, evaluate_mod.target_ranks, wide_matmul.BLOCK = fused, ranks, block
    b_step = {k: min(v) for k, v in step.items()}
    b_rank = {k: min(v) for k, v in rank.items()}
    alloc = "glibc default allocator" if args.glibc_default else "keep_freed_memory"
    print(f"{args.data} (V={data.num_items}), {args.threads} threads, {alloc}:")
    print(f"  full-softmax step: {b_step['F.cross_entropy']:.0f} -> {b_step['fused, one matmul']:.0f} (fused) -> "
          f"{b_step['fused']:.0f} ms/batch (blocked scores); "
          f"{b_step['F.cross_entropy'] / b_step['fused']:.2f}x in all, blocks {b_step['fused, one matmul'] / b_step['fused']:.2f}x")
    print(f"  validation ranking: {b_rank['copy and mask']:.2f} -> {b_rank['one matmul']:.2f} (in place) -> "
          f"{b_rank['rsir_trt.evaluate']:.2f} s (blocked scores); blocks {b_rank['one matmul'] / b_rank['rsir_trt.evaluate']:.2f}x, "
          f"identical metrics")


if __name__ == "__main__":
    main()
