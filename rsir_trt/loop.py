"""The RSIR recursion in a run directory, resumable step by step.

    iter_k/<model>.pt       f_k trained on D_k (teacher and, if different, student)
    iter_k/<model>.train-state.pt   while it trains: the state after its last epoch
    iter_k/metrics-<model>.json     its validation and test metrics
    iter_k/test-ranks-<model>.npz   each test user's rank of the target (user_ranks.py)
    iter_k/engine.onnx      the teacher's decode-step engine      (k < K)
    iter_k/synthetic.npz    accepted sequences, internal ids       (k < K)
    iter_k/synthetic.txt    the same in the user's ids (+ .provenance.tsv)
    iter_k/train_augmented.txt   D_{k+1}: real training prefixes + the synthetic rows it holds
    state.json              steps finished, written after each step's outputs are complete,
                            and the machine that ran the last of them
    report.json, report.md, metrics.png

Every step is deterministic given the config and the machine type, so a killed run
resumed with `resume` on the same kind of machine ends with exactly the results of an
uninterrupted one (elsewhere it warns: see warn_if_other_machine)."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import checkpoint, fault, user_ranks
from .acquire import AcquireConfig, acquire
from .atomic import atomic_path, make_dir, write_json
from .data import SequenceData, Synthetic, check_trained_on, identity, write_synthetic, write_training_file
from .errors import RsirError
from .evaluate import rank_users
from .generate import GenConfig, generate
from .models import LAYOUTS, ModelConfig, check_config, create_model
from .report import SELECT_BY
from .system import machine, machine_change
from .train import TrainConfig, train


SYNTHETIC_ROWS = ("all", "latest")


@dataclass
class LoopConfig:
    data: str | None = None
    iterations: int = 3
    teacher: str = "sasrec"
    student: str = "sasrec"
    finetune: bool = False        # RSIR-FT: successor starts from its predecessor
    stop_early: bool = False      # stop when the student's validation metric stops improving
    backend: str = "onnxruntime"  # engine for generation
    max_len: int = 50
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.5
    layout: str = "recbole"       # SASRec's block layout (models/sasrec.py)
    train: dict = field(default_factory=dict)
    gen: dict = field(default_factory=dict)
    acquire: dict = field(default_factory=dict)   # AcquireConfig: post-verification selection (off by default)
    synthetic_rows: str = "all"   # all: D_k = D_{k-1} + S_k (the paper) | latest: D_k = D_0 + S_k
    seed: int = 0

    def check(self) -> None:
        if self.iterations < 1:
            raise RsirError(f"--iterations must be >= 1, got {self.iterations}")
        if self.layout not in LAYOUTS:
            raise RsirError(f"--layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        for kind, option in ((self.teacher, "--teacher"), (self.student, "--student")):
            check_config(self.model_config(kind, num_items=1), kind_option=option)
        TrainConfig(**self.train).check()
        GenConfig(**self.gen).check()
        AcquireConfig(**self.acquire).check()
        if self.synthetic_rows not in SYNTHETIC_ROWS:
            raise RsirError(f"--synthetic-rows: {self.synthetic_rows!r} is not one of {' | '.join(SYNTHETIC_ROWS)}")

    def model_config(self, kind: str, num_items: int) -> ModelConfig:
        return ModelConfig(kind=kind, num_items=num_items, max_len=self.max_len, dim=self.dim,
                           layers=self.layers, heads=self.heads, dropout=self.dropout, attn_dropout=self.dropout,
                           layout=self.layout if kind == "sasrec" else LAYOUTS[0])  # GRU4Rec has no layout

    def comparable(self) -> dict:
        """What must match to resume (the iteration count may grow; the generation batch
        size and workers never change the output, so they may too)."""
        d = asdict(self)
        d.pop("iterations")
        d["gen"] = {k: v for k, v in asdict(GenConfig(**d["gen"])).items() if k not in ("batch_size", "workers")}
        return d

    def baseline(self) -> dict:
        """What determines the iteration-0 models: runs that agree here share them."""
        d = asdict(self)
        d["train"] = {k: v for k, v in d["train"].items() if k != "synthetic_weight"}   # iteration 0 has no synthetic rows
        return {k: d[k] for k in ("data", "max_len", "dim", "layers", "heads", "dropout", "layout", "train", "seed")}


def finished_steps(root: Path) -> list[str]:
    state = root / "state.json"
    return json.loads(state.read_text())["done"] if state.exists() else []


class Run:
    def __init__(self, root: Path, cfg: LoopConfig, data: SequenceData, log=print, progress=None):
        self.root, self.cfg, self.base, self.log, self.progress = Path(root), cfg, data, log, progress
        self.state_path = self.root / "state.json"
        self.done: list[str] = finished_steps(self.root)
        self.machine = machine()

    # --- bookkeeping -------------------------------------------------------------
    def mark(self, step: str) -> None:
        self.done.append(step)
        write_json(self.state_path, {"done": self.done, "machine": self.machine})

    def warn_if_other_machine(self) -> None:
        """Resuming elsewhere works, but the remaining steps will not repeat an uninterrupted
        run's bits: torch's kernels round differently on another instruction set, thread
        count or version (measured: one Beauty epoch on AVX512 vs AVX2 kernels)."""
        if not self.state_path.exists():
            return
        before = json.loads(self.state_path.read_text()).get("machine")
        change = machine_change(before, self.machine) if before else ""
        if change:
            self.log(f"warning: {self.root} was last run on another machine or setup ({change}); "
                     "the remaining steps will not be bit-identical to an uninterrupted run")

    def it(self, k: int) -> Path:
        d = self.root / f"iter{k}"
        d.mkdir(exist_ok=True)
        return d

    def data_at(self, k: int) -> SequenceData:
        """D_k = D_0 plus the synthetic rows of iterations < k (with synthetic_rows
        "latest": of iteration k-1 alone)."""
        data = SequenceData(self.base.name, self.base.users, self.base.item_tokens, self.base.sequences)
        for j in range(k - 1 if self.cfg.synthetic_rows == "latest" and k else 0, k):
            z = np.load(self.it(j) / "synthetic.npz")
            lens = z["lengths"]
            seqs = np.split(z["items"], np.cumsum(lens)[:-1]) if len(lens) else []
            data.synthetic.extend(Synthetic(list(seqs), z["seed_user"].tolist(), z["iteration"].tolist()))
        return data

    def model_config(self, kind: str) -> ModelConfig:
        return self.cfg.model_config(kind, self.base.num_items)

    # --- steps -------------------------------------------------------------------
    def train_step(self, k: int, kind: str, data: SequenceData) -> None:
        step = f"iter{k}/train-{kind}"
        snapshot = self.it(k) / f"{kind}.train-state.pt"
        if step in self.done:
            snapshot.unlink(missing_ok=True)  # killed between marking the step and removing it
            return
        tcfg = TrainConfig(**{**self.cfg.train, "seed": self.cfg.seed + k})
        model = create_model(self.model_config(kind), seed=tcfg.seed)
        if self.cfg.finetune and k > 0:
            model.load_state_dict(checkpoint.load(self.it(k - 1) / f"{kind}.pt")["state_dict"])
        train_set = data.training_set()
        resumed = f" (resuming from {snapshot.name})" if snapshot.exists() else ""
        self.log(f"iter {k}: training {kind} on {len(train_set):,} sequences{resumed}")
        def progress(epoch, *args):
            fault.point(f"{step}:epoch{epoch}")
            if self.progress:
                self.progress(epoch, *args)
        result = train(model, data, tcfg, progress=progress, snapshot=snapshot)
        inputs, targets = data.eval_inputs("test")
        ranks = rank_users(model, inputs, targets)
        test = user_ranks.metrics_from_ranks(ranks)
        user_ranks.save(user_ranks.ranks_path(self.it(k), kind), ranks, [len(s) for s in inputs])
        checkpoint.save(self.it(k) / f"{kind}.pt", model, data.item_tokens, train=asdict(tcfg),
                        data={"source": self.cfg.data, "format": "auto", "max_len": self.cfg.max_len, "kcore": 0,
                              **identity(data)},
                        result={"best_epoch": result.best_epoch, "seconds": result.seconds})
        write_json(self.it(k) / f"metrics-{kind}.json",
                   {"valid": result.valid, "test": test, "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run, "train_seconds": round(result.seconds, 1),
                    "train_sequences": len(train_set),
                    "train_interactions": int(sum(len(s) for s in train_set)), "machine": self.machine})
        self.mark(step)
        snapshot.unlink()

    def export_step(self, k: int) -> None:
        step = f"iter{k}/export"
        if self.cfg.backend in ("torch", "reference"):  # these run the checkpoint itself
            return
        from .build import build_engine, engine_is_current, engine_path
        if step in self.done:
            if f"iter{k}/generate" in self.done or engine_is_current(engine_path(self.it(k) / "engine", self.cfg.backend)):
                return
            # an engine is derived from the checkpoint alone: rebuilding it changes no result
            self.log(f"iter {k}: the engine is of an older rsir-trt (or unreadable): rebuilding it")
        build_engine(self.it(k) / f"{self.cfg.teacher}.pt", self.it(k) / "engine", backend=self.cfg.backend,
                     topk=GenConfig(**self.cfg.gen).sample_topk)
        fault.point(step)
        if step not in self.done:
            self.mark(step)

    def teacher_runtime(self, k: int, gcfg: GenConfig):
        """The runtime that generates round k + 1: f_k's engine (or checkpoint)."""
        from .build import engine_path
        from .runtime import open_runtime
        b = self.cfg.backend
        source = self.it(k) / f"{self.cfg.teacher}.pt" if b in ("torch", "reference") else engine_path(self.it(k) / "engine", b)
        return open_runtime(source, b, topk=gcfg.sample_topk)

    def generate_step(self, k: int, data: SequenceData) -> None:
        step = f"iter{k}/generate"
        if step in self.done:
            return
        gcfg = GenConfig(**{**self.cfg.gen, "seed": self.cfg.seed + k})
        runtime = self.teacher_runtime(k, gcfg)
        runtime.meta.check(str(self.it(k)), item_tokens=data.item_tokens, max_len=gcfg.max_len)
        self.log(f"iter {k}: generating with {self.cfg.teacher} on {runtime.name}")
        result = generate(runtime, data, gcfg, iteration=k + 1)
        syn = result.synthetic
        acfg = AcquireConfig(**self.cfg.acquire)
        if acfg.cap:
            teacher = checkpoint.load_model(self.it(k) / f"{self.cfg.teacher}.pt")[0]
            syn, result.stats["acquisition"] = acquire(syn, acfg, teacher, seed=self.cfg.seed + k)
            self.log(f"iter {k}: kept {len(syn):,} of {result.stats['acquisition']['candidates']:,} sequences "
                     f"(at most {acfg.cap} per seed, by {acfg.by})")
        lens = np.array([len(s) for s in syn.sequences], dtype=np.int64)
        with atomic_path(self.it(k) / "synthetic.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, items=np.concatenate(syn.sequences) if len(syn) else np.zeros(0, np.int64),
                     lengths=lens, seed_user=np.array(syn.seed_user, np.int64),
                     iteration=np.array(syn.iteration, np.int64))
        fault.point(step)  # npz written, text files and summary not yet
        only = SequenceData(data.name, data.users, data.item_tokens, data.sequences, syn)
        write_synthetic(self.it(k) / "synthetic.txt", only)
        write_json(self.it(k) / "generation.json", result.stats)
        self.mark(step)

    def merge_step(self, k: int) -> None:
        step = f"iter{k}/merge"
        if step in self.done:
            return
        write_training_file(self.it(k) / "train_augmented.txt", self.data_at(k + 1))
        fault.point(step)
        self.mark(step)

    # --- the recursion -----------------------------------------------------------
    def run(self) -> dict:
        c = self.cfg
        self.warn_if_other_machine()
        kinds = list(dict.fromkeys([c.teacher, c.student]))
        best = -1.0
        for k in range(c.iterations + 1):
            data = self.data_at(k)
            for kind in kinds if k < c.iterations else [c.student]:  # the last teacher would teach no one
                self.train_step(k, kind, data)
            valid = json.loads((self.it(k) / f"metrics-{c.student}.json").read_text())["valid"][SELECT_BY]
            if c.stop_early and k > 0 and valid <= best:
                self.log(f"iter {k}: validation {SELECT_BY} {valid:.4f} did not improve on {best:.4f}; stopping")
                break
            best = max(best, valid)
            if k == c.iterations:
                break
            self.export_step(k)
            self.generate_step(k, data)
            self.merge_step(k)
        return self.report()

    def report(self) -> dict:
        from .report import write_report
        from .user_groups import target_popularity
        return write_report(self.root, self.cfg, target_popularity(self.base))


def read_config(path: Path) -> LoopConfig:
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw.get("train"), dict):  # fill in what runs started before an option existed
            raw["train"] = {**asdict(TrainConfig(batching="length")), **raw["train"]}
        return LoopConfig(**raw)
    except (ValueError, TypeError, AttributeError) as e:
        raise RsirError(f"{path}: not a loop config ({e})") from None


def setting_diff(old: dict, new: dict, prefix: str = "") -> str:
    """'gen.tau 10 -> 5, seed 0 -> 1': every leaf setting that differs, so the user sees
    which option to change, not just which section."""
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = setting_diff(a, b, f"{prefix}{k}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{k} {a} -> {b}")
    return ", ".join(out)


def branch_kinds(cfg: LoopConfig, source: Path) -> list[str]:
    """The iteration-0 models of `source` this run can reuse: same data and training
    settings, so ablations (tau, p, m, teacher, ...) start from the very same baseline."""
    src_cfg = source / "config.json"
    if not src_cfg.exists():
        raise RsirError(f"--branch-from {source}: not a run directory (no config.json)")
    diff = setting_diff(read_config(src_cfg).baseline(), cfg.baseline())
    if diff:
        raise RsirError(f"--branch-from {source}: its iteration 0 was trained with different settings ({diff})")
    src_done = finished_steps(source)
    wanted = list(dict.fromkeys([cfg.teacher, cfg.student]))
    kinds = [k for k in wanted if f"iter0/train-{k}" in src_done]
    if not kinds:
        raise RsirError(f"--branch-from {source}: it has no finished iteration-0 {' or '.join(wanted)} model")
    return kinds


def branch(root: Path, source: Path, kinds: list[str]) -> None:
    (root / "iter0").mkdir(exist_ok=True)
    for kind in kinds:
        ranks = user_ranks.ranks_path(source / "iter0", kind)
        extra = [ranks.name] if ranks.exists() else []   # recorded since session 32
        for name in [f"{kind}.pt", f"metrics-{kind}.json", *extra]:
            with atomic_path(root / "iter0" / name) as tmp:
                shutil.copyfile(source / "iter0" / name, tmp)
    # no machine recorded: a branch is a new run, not a resumed one (iter0's metrics name theirs)
    write_json(root / "state.json", {"done": [f"iter0/train-{k}" for k in kinds]})


def check_run_data(run: Path, cfg: LoopConfig, data: SequenceData, advice: str) -> None:
    """`run`'s iteration-0 models were trained on `data` (the same name can hold other
    content: an edited file; runs from before session 28 record nothing)."""
    for kind in dict.fromkeys([cfg.teacher, cfg.student]):
        path = run / "iter0" / f"{kind}.pt"
        if path.exists():
            check_trained_on(checkpoint.load(path).get("data", {}), data, str(path), advice=advice)


def start_run(root: Path, cfg: LoopConfig, resume: bool, branch_from: Path | None = None,
              data: SequenceData | None = None) -> None:
    """Create the run directory (optionally branched from another run's iteration 0) or
    check a resumed one matches its config (and `data`, when given)."""
    cfg.check()
    root = Path(root)
    cfg_path = root / "config.json"
    if cfg_path.exists():
        old_cfg = read_config(cfg_path)
        if not resume:
            raise RsirError(f"{root}: run directory exists; pass --resume to continue it, or choose another --out")
        diff = setting_diff(old_cfg.comparable(), cfg.comparable())
        if diff:
            raise RsirError(f"{root}: --resume with different settings ({diff}) than the run was started with")
        if data is not None:
            check_run_data(root, cfg, data, "resume it with the data it was started with")
    elif resume:
        raise RsirError(f"{root}: nothing to resume (no config.json)")
    source = Path(branch_from) if branch_from is not None and not cfg_path.exists() else None
    kinds = branch_kinds(cfg, source) if source else []
    if source and data is not None:
        check_run_data(source, cfg, data, "branch from a run of this data")
    make_dir(root, f"--out {root}")
    if kinds:
        branch(root, source, kinds)
    write_json(cfg_path, asdict(cfg))  # last: a run without it is started afresh
