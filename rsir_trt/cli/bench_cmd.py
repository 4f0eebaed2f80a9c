from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..atomic import make_dir, write_json
from ..errors import RsirError
from ..generate import GenConfig
from .common import console


def parse_ints(text: str, option: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RsirError(f"{option}: {text!r} is not a comma-separated list of integers") from None
    if not vals or min(vals) < 1:
        raise RsirError(f"{option}: values must be >= 1, got {text!r}")
    return vals


def bench_cmd(
    runtimes: str = typer.Option("reference,torch,onnxruntime,tensorrt", "--runtimes"),
    batch: str = typer.Option("1,32,256,1024", "--batch", help="Batch sizes, comma-separated."),
    vocab: int = typer.Option(12102, "--vocab", help="Vocabulary size (random model); ignored with --ckpt."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Benchmark a trained checkpoint instead."),
    data: Optional[str] = typer.Option(None, "--data", help="With --ckpt: seeds from this dataset (real policy, tau=10)."),
    other_data: bool = typer.Option(False, "--other-data", help="--data other than the checkpoint's training data (same item catalogue)."),
    model: str = typer.Option("sasrec", "--model"),
    dim: int = typer.Option(64, "--dim"), layers: int = typer.Option(2, "--layers"),
    s_max: int = typer.Option(50, "--s-max"),
    steps: int = typer.Option(30, "--steps"), warmup: int = typer.Option(5, "--warmup"),
    gen_seeds: int = typer.Option(512, "--gen-seeds", help="Seeds for the whole-generation run (0 = skip)."),
    m: int = typer.Option(1, "--m"),
    gen_repeats: int = typer.Option(5, "--gen-repeats", help="Timed whole generations per runtime, after an untimed one, taken in turns (the median is reported)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("bench-out"), "--out", "-o", help="Directory for bench.json and bench.png."),
):
    """Generation latency (p50/p90/p99) and throughput per runtime, beside a matmul+topk bound."""
    import torch

    from ..bench import RUNTIMES, plot, run_bench
    names = [r.strip() for r in runtimes.split(",") if r.strip()]
    bad = [r for r in names if r not in RUNTIMES]
    if bad:
        raise RsirError(f"--runtimes: unknown {bad[0]!r} (choose from {', '.join(RUNTIMES)})")
    batches = parse_ints(batch, "--batch")
    for name, v in (("--steps", steps), ("--vocab", vocab), ("--dim", dim), ("--layers", layers), ("--s-max", s_max),
                    ("--m", m), ("--gen-repeats", gen_repeats)):
        if v < 1:
            raise RsirError(f"{name} must be >= 1, got {v}")
    for name, v in (("--warmup", warmup), ("--gen-seeds", gen_seeds)):
        if v < 0:
            raise RsirError(f"{name} must be >= 0, got {v}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise RsirError(f"--device {device}: not available here")
    if out.exists() and not out.is_dir():
        raise RsirError(f"--out {out}: exists and is not a directory")
    make_dir(out, f"--out {out}")   # before the work: a bad place fails now
    ds, gcfg = None, GenConfig(m=m, tau=vocab, max_len=s_max)  # random model: no fidelity check
    if ckpt:
        from ..checkpoint import load_model
        net, payload = load_model(ckpt)
        if data:
            from ..data import check_trained_on, open_dataset
            ds = open_dataset(data, max_len=net.config.max_len, item_tokens=payload["item_tokens"])
            check_trained_on(payload.get("data", {}), ds, f"--data {data}", other_data)
            gcfg = GenConfig(m=m, max_len=net.config.max_len)
        else:
            gcfg = GenConfig(m=m, tau=net.config.num_items, max_len=net.config.max_len)
    else:
        from ..models import ModelConfig, create_model
        net = create_model(ModelConfig(kind=model, num_items=vocab, max_len=s_max, dim=dim, layers=layers), seed=0)
    result = run_bench(net, ds, names, batches, steps, warmup, gen_seeds, gen=gcfg, device=device,
                       gen_repeats=gen_repeats, progress=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    write_json(out / "bench.json", result)
    plot(result, out / "bench.png")
    s = result["settings"]
    console.print(f"[bold]{s['model']}[/bold] V={s['V']} S_max={s['S_max']} d={s['d']} layers={s['layers']} "
                  f"{s['dtype']} device={s['device']} threads={s['threads']}")
    t = Table(title="decode step (cache half full)")
    for col in ("runtime", "B", "p50 ms", "p90 ms", "p99 ms", "mean ms", "x bound", "items/s"):
        t.add_column(col, justify="right")
    for r in result["steps"]:
        t.add_row(r["runtime"], str(r["B"]), f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                  f"{r['mean_ms']:.3f}", f"{r['x_bound']:.2f}", f"{r['items_per_s']:,.0f}")
    console.print(t)
    if result["generation"]:
        g = Table(title=f"whole generation ({s['generation']})")
        for col in ("runtime", "workers", "trajectories", "state rows", "head rows", "seconds (min-max)", "first run s", "seq/s",
                    "items/s", "x reference", "same output"):
            g.add_column(col, justify="right")
        for r in result["generation"]:
            rows = [f"{r[k]:,}" if r.get(k) is not None else "-" for k in ("engine_rows", "engine_head_rows")]
            g.add_row(r["runtime"], str(r["workers"]), str(r["trajectories"]), *rows, f"{r['seconds']:.2f} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f})", f"{r['untimed_first_seconds']:.2f}",
                      f"{r['sequences_per_s']:,.0f}", f"{r['items_per_s']:,.0f}",
                      f"{r['x_reference']:.1f}" if r["x_reference"] else "-",
                      str(r["same_output_as_first"] and r["repeats_identical"]))
        console.print(g)
    for name, why in s["providers"].items():
        if isinstance(why, str):
            console.print(f"[yellow]{name}: skipped ({why})[/yellow]")
    console.print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
