from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..atomic import write_json, write_text
from ..data import open_dataset
from ..errors import RsirError
from ..generate import GenConfig
from ..report import markdown, users_markdown
from ..system import cpu_threads
from .common import BatchingOpt, DataOpt, DropKnownOpt, LayoutOpt, LrDropsOpt, MinLenOpt, SeedMaxItemsOpt, console, epoch_line

if TYPE_CHECKING:   # torch: the commands import it when they run
    from ..loop import LoopConfig


def loop_cmd(
    ctx: typer.Context,
    data: Optional[str] = DataOpt,
    iterations: int = typer.Option(3, "--iterations", "-k"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/loop-<data>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last finished step, or a finished one to a larger --iterations."),
    branch_from: Optional[Path] = typer.Option(None, "--branch-from", help="Reuse the iteration-0 models of this run (same data and training settings)."),
    teacher: str = typer.Option("sasrec", "--teacher", help="Model that generates (sasrec | gru4rec)."),
    student: Optional[str] = typer.Option(None, "--student", help="Model evaluated (default: the teacher)."),
    finetune: bool = typer.Option(False, "--finetune", help="RSIR-FT: successor starts from its predecessor."),
    stop_early: bool = typer.Option(False, "--stop-early", help="Stop when validation stops improving."),
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime | tensorrt | torch | reference"),
    max_len: int = typer.Option(50, "--max-len"),
    min_len: int = MinLenOpt,
    dim: int = typer.Option(64, "--dim"),
    dropout: float = typer.Option(0.5, "--dropout"),
    layout: str = LayoutOpt,
    lr: float = typer.Option(2e-3, "--lr"),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="Adam's L2 penalty."),
    batch_size: int = typer.Option(128, "--batch-size"),
    batching: str = BatchingOpt,
    epochs: int = typer.Option(50, "--epochs", help="Per model; the loop trains K+1 of them."),
    patience: int = typer.Option(5, "--patience"),
    lr_drops: int = LrDropsOpt,
    synthetic_weight: float = typer.Option(1.0, "--synthetic-weight", help="Loss weight of each synthetic row's positions, "
                                           "a real row's being 1 (beyond the paper, which weighs them alike)."),
    loss: str = typer.Option("sampled", "--loss", help="sampled: 256 uniform negatives, the paper's protocol | ce: full softmax, a stronger baseline (RSIR helped it less here)."),
    tau: int = typer.Option(10, "--tau", help="Fidelity rank threshold (vocabulary size = no check)."),
    p: float = typer.Option(0.5, "--p"),
    m: int = typer.Option(5, "--m"),
    keep_failing: bool = typer.Option(False, "--keep-failing"),
    start: str = typer.Option("first", "--start", help="first | prefix (a random proper prefix of the seed) | item (a random item of the seed; beyond the paper)."),
    sample_topk: int = typer.Option(0, "--sample-topk"),
    temperature: float = typer.Option(1.0, "--temperature"),
    synthetic_rows: str = typer.Option("all", "--synthetic-rows", help="Which rounds' synthetic rows D_k holds: all "
                                       "(D_k = D_(k-1) + S_k, the paper) | latest (D_k = D_0 + S_k: each round's rows "
                                       "replace the last round's; beyond the paper)."),
    synthetic_seeds: bool = typer.Option(False, "--synthetic-seeds", help="Also seed from synthetic rows already in D_k."),
    drop_known: bool = DropKnownOpt,
    seed_max_items: int = SeedMaxItemsOpt,
    gen_batch: int = typer.Option(1024, "--gen-batch", help="Generation: trajectories in flight per worker (engine rows <= this)."),
    cap_per_seed: int = typer.Option(0, "--cap-per-seed", help="Keep at most this many generated sequences per seed user "
                                     "(DA-RSIR's acquisition, beyond the paper; 0: all)."),
    acquire: str = typer.Option("disagreement", "--acquire", help="With --cap-per-seed, which: disagreement (the "
                                "teacher's MC-dropout sd of each transition's log-probability, highest first) | first."),
    acquire_passes: int = typer.Option(8, "--acquire-passes", help="Dropout passes for --acquire disagreement."),
    seed: int = typer.Option(0, "--seed"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated: one loop per seed in OUT/seed-S, "
                                        "side by side, then their comparison in OUT/compare.md."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="With --seeds: loops at a time (default: one per "
                                       "core, at most one per seed); the cores are split between them."),
):
    """The RSIR recursion: train -> build engine -> generate -> merge -> train successor, K times."""
    from .. import replicates   # these load torch: only the commands that need it import them
    from ..acquire import AcquireConfig
    from ..loop import LoopConfig, Run, start_run
    from ..train import TrainConfig
    acq = AcquireConfig(cap=cap_per_seed, by=acquire, passes=acquire_passes)
    acq.check()   # a bad --acquire is refused even without --cap-per-seed
    if gen_batch < 1:   # GenConfig would name it --batch-size, which is training's here
        raise RsirError(f"--gen-batch must be >= 1, got {gen_batch}")
    cfg = LoopConfig(data=data, iterations=iterations, teacher=teacher, student=student or teacher,
                     finetune=finetune, stop_early=stop_early, backend=backend, max_len=max_len, dim=dim,
                     dropout=dropout, layout=layout, seed=seed,
                     train=TrainConfig(loss=loss, lr=lr, weight_decay=weight_decay, batch_size=batch_size, epochs=epochs, patience=patience, lr_drops=lr_drops,
                                         batching=batching, synthetic_weight=synthetic_weight).__dict__,
                     gen=GenConfig(tau=tau, p=p, m=m, max_len=max_len, min_len=min_len, keep_failing=keep_failing, start=start,
                                   sample_topk=sample_topk, temperature=temperature, synthetic_seeds=synthetic_seeds,
                                   drop_known=drop_known, seed_max_items=seed_max_items, batch_size=gen_batch).__dict__,
                     synthetic_rows=synthetic_rows,
                     acquire=acq.__dict__ if cap_per_seed else {})   # {}: the paper's RSIR, and configs as before
    if backend not in ("onnxruntime", "tensorrt", "torch", "reference"):
        raise RsirError(f"--backend: {backend!r} is not one of onnxruntime, tensorrt, torch, reference")
    ds = open_dataset(data, max_len=max_len)
    root = Path(out or f"runs/loop-{ds.name}")
    if seeds is not None:
        return loop_seeds(ctx, cfg, root, replicates.parse_seeds(seeds), jobs, resume, branch_from)
    start_run(root, cfg, resume, branch_from, ds)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("", total=None, info="")

        def log(msg):
            bar.console.print(msg)
            bar.update(task, description=msg, completed=0, info="")

        def progress(epoch, loss_, row, is_best):
            info = epoch_line(epoch, loss_, row, is_best, cfg.train["lr"])
            bar.update(task, info=info)
            if not console.is_terminal:
                console.print(info)
        report = Run(root, cfg, ds, log=log, progress=progress).run()
    console.print(f"\n[bold]{report['title']}[/bold]")
    users = users_markdown(report["test_users"]) if "test_users" in report else ""
    console.print(markdown(report["iterations"]) + users, soft_wrap=True, highlight=False)
    console.print(f"report: {root / 'report.md'}, plot: {root / 'metrics.png'}")


def loop_seeds(ctx, cfg: LoopConfig, root: Path, seeds: list[int], jobs: Optional[int], resume: bool,
               branch_from: Optional[Path]) -> None:
    from .. import replicates
    from ..loop import branch_kinds
    if cfg.seed != 0:
        raise RsirError("--seed and --seeds: give one of them")
    if jobs is not None and jobs < 1:
        raise RsirError(f"--jobs must be >= 1, got {jobs}")
    cfg.check()
    for s in seeds if branch_from is not None else []:  # refuse a bad source before starting any
        branch_kinds(dataclasses.replace(cfg, seed=s), Path(branch_from) / f"seed-{s}")
    taken = [str(root / f"seed-{s}") for s in seeds if (root / f"seed-{s}" / "config.json").exists()]
    if taken and not resume:
        raise RsirError(f"{', '.join(taken)}: run directory exists; pass --resume to continue, or choose another --out")
    runs = replicates.run_seeds(child_args(ctx), seeds, root, jobs or min(len(seeds), cpu_threads()), resume,
                                branch_from, say=console.print)
    show_comparison(runs, root / "compare")
    console.print(f"comparison: {root / 'compare.md'}; each run's report: {root}/seed-S/report.md")


def child_args(ctx: typer.Context) -> list[str]:
    """This command's options as given or defaulted, for one seed's `loop` process;
    what differs per seed (out, seed, resume, branch) is added by run_seeds."""
    args = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in ("out", "seed", "seeds", "jobs", "resume", "branch_from") or value is None:
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            args += [flag] if value else list(param.secondary_opts[:1])
        else:
            args += [flag, str(value)]
    return args


def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="Loop run directories of one setting, different --seed."),
    against: Optional[list[str]] = typer.Option(None, "--against", help="Control runs of another setting over the same "
                                                "seeds (comma-separated or repeated): each seed's own gains compared."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table here (.md) and beside it (.json)."),
    by_length: Optional[str] = typer.Option(None, "--by-length", help="Also the gains by the users' history length, "
                                            "in buckets up to these lengths (e.g. 5,10,20); from the test ranks each loop "
                                            "records (older runs' models are evaluated again)."),
    by_popularity: Optional[str] = typer.Option(None, "--by-popularity", help="Also the gains by the test target's "
                                                "popularity rank in the real training data, in buckets up to these "
                                                "ranks (e.g. 100,1000: head, torso, tail)."),
    base_iteration: int = typer.Option(0, "--base-iteration", help="Measure every change over this iteration "
                                       "instead of iteration 0 (e.g. 3: do rounds 4 and 5 add to round 3?)."),
):
    """Mean and sd over seeds per iteration, the gain of the means, and each run's own gain;
    with --against, the gains against another setting's runs seed by seed."""
    control = [Path(p) for a in against or [] for p in a.split(",") if p]
    if control and base_iteration:
        raise RsirError("--base-iteration: not with --against (which sets each seed's gains over iteration 0 "
                        "against the control's)")
    show_comparison(runs, out, control, by_length, by_popularity, base_iteration)


def show_comparison(runs: list[Path], out: Optional[Path], control: Optional[list[Path]] = None,
                    by_length: Optional[str] = None, by_popularity: Optional[str] = None, base: int = 0) -> None:
    """Print the runs' comparison (and their contrast with `control`, and their gains by
    history length or target popularity), every change over iteration `base`; with `out`,
    also write it to out.md and out.json."""
    from .. import replicates
    from .. import user_groups as ug
    groupings = [(g, ug.parse_edges(text, g)) for g, text in ((ug.HISTORY, by_length), (ug.POPULARITY, by_popularity))
                 if text is not None]
    loaded = [replicates.load_run(r) for r in runs]
    summary = replicates.summarise(loaded, base)
    text = replicates.markdown(summary)
    if control:
        summary["contrast"] = replicates.contrast(loaded, [replicates.load_run(r) for r in control])
        text += "\n" + replicates.contrast_markdown(summary["contrast"])
    if groupings:
        cfg = loaded[0]["config"]
        ranks, history = ug.runs_test_ranks(summary["runs"], cfg, len(summary["iterations"]),
                                            say=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    for g, edges in groupings:
        values = ug.group_values(g, summary["runs"][0], cfg, history)
        per_run = [[ug.metrics_by_group(r, values, edges, g.key) for r in run] for run in ranks]
        summary[g.section] = ug.summarise(summary["runs"], per_run, base, g.key)
        text += "\n" + ug.markdown(summary[g.section], edges, g)
    if out:  # the atomic writes refuse a missing or read-only directory, before writing anything
        write_text(out.with_suffix(".md"), text)
        write_json(out.with_suffix(".json"), summary)
    console.print(text, soft_wrap=True, highlight=False)
