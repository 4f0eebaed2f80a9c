from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress
from rich.table import Table

from ..atomic import check_writable, write_json
from ..data import SequenceData, add_synthetic_file, check_trained_on, open_dataset, write_synthetic
from ..errors import RsirError
from ..generate import GenConfig, generate
from ..runtime import open_runtime
from .common import DropKnownOpt, FormatOpt, MinLenOpt, SeedMaxItemsOpt, console, err_console


def build_engine_cmd(
    ckpt: Path = typer.Argument(..., help="Checkpoint file or training run directory."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Engine path without suffix (default engines/<run>)."),
    backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | tensorrt"),
    topk: int = typer.Option(0, "--topk", help="Also output top-k ids/scores (needed for sampling)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 (TensorRT)"),
    min_batch: int = typer.Option(1, "--min-batch"),
    opt_batch: int = typer.Option(256, "--opt-batch"),
    max_batch: int = typer.Option(4096, "--max-batch"),
    exporter: str = typer.Option("torchscript", "--exporter", help="torchscript (fast) | dynamo"),
):
    """Export a checkpoint's decode step + RSIR head to ONNX and build an engine."""
    from ..build import build_engine   # torch and onnx: loaded by the commands that use them
    if exporter not in ("torchscript", "dynamo"):
        raise RsirError(f"--exporter: {exporter!r} is not one of torchscript, dynamo")
    name = ckpt.parent.name if ckpt.suffix == ".pt" else ckpt.name
    stem = out or Path("engines") / name   # check_writable makes missing folders
    check_writable(Path(stem).with_suffix(".onnx"))
    s = build_engine(ckpt, Path(stem), backend, topk, precision, (min_batch, opt_batch, max_batch),
                     dynamo=exporter == "dynamo")
    table = Table(title="engine built")
    table.add_column("field")
    table.add_column("value")
    for k, v in s.items():
        table.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    console.print(table)


def generate_cmd(
    engine: Path = typer.Option(..., "--engine", "-e", help="engine (.onnx/.plan) or checkpoint (torch/reference)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset (default ml-100k)."),
    fmt: str = FormatOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Output file (one line per synthetic user)."),
    backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | tensorrt | torch | reference"),
    provider: str = typer.Option("cpu", "--provider", help="onnxruntime provider: cpu | cuda | tensorrt"),
    tau: int = typer.Option(10, "--tau"), p: float = typer.Option(0.5, "--p"), m: int = typer.Option(5, "--m"),
    max_len: int = typer.Option(50, "--max-len"),
    min_len: int = MinLenOpt,
    keep_failing: bool = typer.Option(False, "--keep-failing", help="Keep the item before a failing check (authors' code)."),
    start: str = typer.Option("first", "--start", help="first | prefix | item"),
    sample_topk: int = typer.Option(0, "--sample-topk", help="0 = greedy; k = top-k sampling."),
    temperature: float = typer.Option(1.0, "--temperature"),
    extra: Optional[Path] = typer.Option(None, "--extra", help="Synthetic rows from an earlier round (generate's output)."),
    synthetic_seeds: bool = typer.Option(False, "--synthetic-seeds", help="Also seed from the --extra rows."),
    drop_known: bool = DropKnownOpt,
    seed_max_items: int = SeedMaxItemsOpt,
    other_data: bool = typer.Option(False, "--other-data", help="Seed from data other than the model's training data (same item catalogue)."),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(1024, "--batch-size", help="Trajectories in flight per worker (engine rows <= this)."),
    workers: int = typer.Option(0, "--workers", help="Workers run side by side, one engine session each (onnxruntime), taking seeds from one queue; 0 = one per CPU thread on CPU. Never changes the output."),
):
    """Generate synthetic sequences with fidelity control; writes them + a JSON summary."""
    cfg = GenConfig(tau=tau, p=p, m=m, max_len=max_len, min_len=min_len, keep_failing=keep_failing, start=start,
                    sample_topk=sample_topk, temperature=temperature, synthetic_seeds=synthetic_seeds,
                    drop_known=drop_known, seed_max_items=seed_max_items, seed=seed, batch_size=batch_size, workers=workers)
    cfg.check()
    if out.exists() and out.is_dir():
        raise RsirError(f"--out {out}: is a directory")
    check_writable(out)
    runtime = open_runtime(engine, backend, provider=provider, topk=sample_topk)
    ds = open_dataset(data, fmt, max_len=runtime.meta.max_len, item_tokens=runtime.meta.item_tokens)
    runtime.meta.check(str(engine), item_tokens=ds.item_tokens, max_len=max_len, topk=sample_topk)
    check_trained_on(runtime.meta.data, ds, f"--data {data or ds.name}", other_data)
    if synthetic_seeds and extra is None:
        raise RsirError("--synthetic-seeds needs --extra FILE (the synthetic rows to seed from)")
    if extra is not None:
        add_synthetic_file(ds, extra, runtime.meta.max_len)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task(f"generating on {runtime.name}", total=None)
        result = generate(runtime, ds, cfg, progress=lambda d, n: bar.update(task, completed=d, total=n))
    write_synthetic(out, SequenceData(ds.name, ds.users, ds.item_tokens, ds.sequences, result.synthetic))
    write_json(Path(str(out) + ".json"), result.stats)
    st = result.stats
    table = Table(title=f"generated on {runtime.name}: {ds.name}")
    table.add_column("")
    table.add_column("value", justify="right")
    for k in ("trajectories", "kept", "too_short", "duplicates", "mean_len", "new_interactions",
              "density_before_pct", "density_after_pct", "seconds", "sequences_per_s", "items_per_s",
              "engine_rows", "engine_head_rows", "workers"):
        if k in st:  # the reference runtime has no engine rows
            table.add_row(k, f"{st[k]:,}" if isinstance(st[k], int) else str(st[k]))
    for r, n in st["stop_reasons"].items():
        table.add_row(f"stop: {r}", f"{n:,}")
    console.print(table)
    console.print(f"wrote {out} and {out}.json")
