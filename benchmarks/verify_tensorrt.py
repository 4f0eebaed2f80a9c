"""Verify the TensorRT path on a CUDA host with TensorRT 10.x/11.x installed:
build a .plan from a checkpoint, run the decode step, compare with torch, and
generate the same dataset as the ONNX Runtime engine.

    python benchmarks/verify_tensorrt.py --ckpt runs/x/model.pt --out /tmp/trt
Exit 0 = verified; prints what was compared."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None, help="dataset for the generation comparison (default ml-100k)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from rsir_trt.build import build_engine
    from rsir_trt.data import open_dataset
    from rsir_trt.data.dataset import SequenceData
    from rsir_trt.generate import GenConfig, generate
    from rsir_trt.runtime import open_runtime
    from rsir_trt.runtime.base import remaining_seed_items

    build_engine(Path(args.ckpt), out / "e", "onnxruntime")
    s = build_engine(Path(args.ckpt), out / "e", "tensorrt")
    print("built", s["engine"])
    trt_rt, torch_rt = open_runtime(out / "e.plan"), open_runtime(args.ckpt, "torch", device="cuda")
    rng = np.random.default_rng(0)
    V, S = trt_rt.meta.num_items, trt_rt.meta.max_len
    worst = 0
    for B in (1, 7, 256, 1024):
        trt_rt.allocate(B)
        torch_rt.allocate(B)
        seqs = rng.integers(1, V, size=(B, S))
        seeds = np.zeros((B, S), dtype=np.int64)
        seeds[:, :10] = rng.integers(1, V, size=(B, 10))
        tau = np.full(B, 10)
        for t in range(S - 1):
            traj = np.where(np.arange(S)[None] <= t, seqs, 0)
            rest = remaining_seed_items(seeds, traj)
            a = trt_rt.step(seqs[:, t].copy(), np.full(B, t), traj, np.arange(B), rest, tau)
            b = torch_rt.step(seqs[:, t].copy(), np.full(B, t), traj, np.arange(B), rest, tau)
            worst = max(worst, int((a.best_item != b.best_item).sum() + (a.fidelity != b.fidelity).sum()))
    print(f"head outputs differing from torch CUDA (near-ties): {worst} rows at most per step")
    data = open_dataset(args.data)
    data = SequenceData(data.name, data.users[:300], data.item_tokens, data.sequences[:300])
    r_trt = generate(trt_rt, data, GenConfig(m=2))
    r_ort = generate(open_runtime(out / "e.onnx"), data, GenConfig(m=2))
    same = [x.tobytes() for x in r_trt.synthetic.sequences] == [x.tobytes() for x in r_ort.synthetic.sequences]
    print(f"generation: tensorrt {r_trt.stats['sequences_per_s']} seq/s, onnxruntime {r_ort.stats['sequences_per_s']} "
          f"seq/s, identical datasets: {same}")
    return 0 if same and worst <= max(1, V // 1000) else 1


if __name__ == "__main__":
    sys.exit(main())
