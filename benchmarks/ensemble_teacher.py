"""Session 51's probe: does a stronger teacher lift RSIR's student?

The teacher is an ensemble scoring each item by the sum of its members' logits (which ranks
as the mean of their log-softmax does), run on the torch runtime; the student is trained
exactly as in the loop. Two ways, each a loop run directory that `rsir-trt compare` reads:

    # round k+1 taught by the iteration-k models of several runs (seeds) of one setting: OUT
    # may be one of them; for k > 0 they must all have finished iteration k (run the seeds
    # round by round: --iterations 1, then 2, ...; a run resumes where it stopped)
    RSIR_THREADS=1 python benchmarks/ensemble_teacher.py SOURCE OUT --members RUN,RUN,... [--iterations K]
    # rounds 2.. taught by the sum of f_0..f_k, the run's own earlier models ("combine
    # generations"); reuses SOURCE's iteration 0, S_0 and f_1, which only the loop's
    # settings and seed determine, and its remaining rounds keep every round's rows
    RSIR_THREADS=1 python benchmarks/ensemble_teacher.py SOURCE OUT --combine [--iterations 3]

SOURCE is a finished loop run; OUT starts from its iteration 0 (and with --combine its
S_0 and f_1), with SOURCE's settings. --gen-only stops after the first generation it makes.

    python benchmarks/ensemble_teacher.py --score CKPT+CKPT+... [CKPT ...]

prints each group's validation and test Recall/NDCG@10 (a group of one: the model itself)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from rsir_trt import checkpoint
from rsir_trt.atomic import write_json
from rsir_trt.data import SequenceData, open_dataset
from rsir_trt.evaluate import rank_users
from rsir_trt.generate import GenConfig
from rsir_trt.loop import Run, read_config, start_run
from rsir_trt.runtime import checkpoint_meta
from rsir_trt.runtime.torch_rt import TorchRuntime
from rsir_trt.system import configure_cpu
from rsir_trt.user_ranks import metrics_from_ranks


class Ensemble(torch.nn.Module):
    """The members' decode steps side by side: hidden states and item tables concatenated,
    so h . E^T is the sum of the members' logits."""

    def __init__(self, models):
        super().__init__()
        self.members = torch.nn.ModuleList(models)
        self.config = models[0].config
        self.n = len(models[0].cache_shapes(1))
        # the members are frozen: concatenated once, not at every step (the decode step reads it)
        self.weight = torch.cat([m.item_weight for m in models], dim=1).detach()

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.encode(seqs) for m in self.members], dim=2)

    @property
    def item_weight(self) -> torch.Tensor:
        return self.weight

    def cache_shapes(self, batch: int):
        return [(f"c{j}", s) for j, (_, s) in enumerate(sum((m.cache_shapes(batch) for m in self.members), []))]

    def step(self, item, pos, cache):
        hs, rows = [], []
        for i, m in enumerate(self.members):
            h, r = m.step(item, pos, cache[i * self.n:(i + 1) * self.n])
            hs.append(h)
            rows += r
        return torch.cat(hs, dim=1), rows


class EnsembleRun(Run):
    """A loop run whose rounds are taught by ensembles: teachers(run, k) lists the
    checkpoints whose summed logits generate round k + 1."""

    def __init__(self, *args, teachers, gen_only: bool, **kw):
        super().__init__(*args, **kw)
        self.teachers, self.gen_only = teachers, gen_only

    def teacher_runtime(self, k: int, gcfg: GenConfig) -> TorchRuntime:
        paths = self.teachers(self, k)
        self.log(f"iter {k}: the teacher is the sum of {', '.join(map(str, paths))}")
        return TorchRuntime(Ensemble([checkpoint.load_model(p)[0] for p in paths]).eval(),
                            checkpoint_meta(checkpoint.load(paths[-1]), gcfg.sample_topk))

    def generate_step(self, k: int, data: SequenceData) -> None:
        fresh = f"iter{k}/generate" not in self.done
        super().generate_step(k, data)
        if fresh and self.gen_only:
            sys.exit(0)


def score(groups: list[str]) -> None:
    """Each '+'-joined group of checkpoints scored as one ensemble, as the loop scores a model."""
    configure_cpu()
    for group in groups:
        models, payloads = zip(*[checkpoint.load_model(p) for p in group.split("+")])
        data = open_dataset(payloads[0]["data"]["source"], max_len=models[0].config.max_len,
                            item_tokens=payloads[0]["item_tokens"])
        with torch.no_grad():
            out = {split: metrics_from_ranks(rank_users(Ensemble(list(models)).eval(), *data.eval_inputs(split)))
                   for split in ("valid", "test")}
        print(json.dumps({"models": group, **{f"{split}_{m}": round(out[split][m], 4) for split in out
                                              for m in ("recall@10", "ndcg@10")}}))


def main() -> None:
    if sys.argv[1:2] == ["--score"]:
        return score(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("out")
    way = ap.add_mutually_exclusive_group(required=True)
    way.add_argument("--members", help="comma-separated runs whose iteration-k models teach round k+1")
    way.add_argument("--combine", action="store_true", help="round k+1 taught by f_0..f_k")
    ap.add_argument("--iterations", type=int, default=None, help="default: 1 with --members, 3 with --combine")
    ap.add_argument("--gen-only", action="store_true")
    args = ap.parse_args()
    source, out = Path(args.source), Path(args.out)
    cfg = read_config(source / "config.json")
    cfg.iterations = args.iterations or (3 if args.combine else 1)
    cfg.synthetic_rows, cfg.backend = "all", "torch"
    data = open_dataset(cfg.data, max_len=cfg.max_len)
    fresh = not (out / "config.json").exists()
    start_run(out, cfg, resume=not fresh, branch_from=source, data=data)
    kind = cfg.teacher
    if args.combine:
        if fresh:   # S_0 and f_1 as SOURCE made them
            (out / "iter1").mkdir()
            for name in ("iter0/synthetic.npz", "iter0/generation.json", f"iter1/{kind}.pt",
                         f"iter1/metrics-{kind}.json", f"iter1/test-ranks-{kind}.npz"):
                shutil.copyfile(source / name, out / name)
            write_json(out / "state.json", {"done": [f"iter0/train-{kind}", "iter0/generate", f"iter1/train-{kind}"]})
        teachers = lambda run, k: [run.it(j) / f"{kind}.pt" for j in range(k + 1)]
    else:
        members = [Path(m) for m in args.members.split(",")]
        teachers = lambda run, k: [m / f"iter{k}" / f"{kind}.pt" for m in members]
    configure_cpu()
    EnsembleRun(out, cfg, data, teachers=teachers, gen_only=args.gen_only).run()


if __name__ == "__main__":
    main()
