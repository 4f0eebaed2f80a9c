"""Shared CLI pieces: consoles, dataset options, tables."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..atomic import make_dir
from ..errors import RsirError

# piped or logged output has no terminal width; rich would assume 80 columns and cut the
# tables' names to "onnxr…", so such output gets room for the widest table (bench's)
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err_console = Console(stderr=True)

DataOpt = typer.Option(None, "--data", "-d", help="Dataset file or name (ml-100k [default], beauty, sports).")
FormatOpt = typer.Option("auto", "--format", help="auto | lines | inter | csv")
MaxLenOpt = typer.Option(50, "--max-len", help="Keep each user's last N items; also the model's S_max.")
KcoreOpt = typer.Option(0, "--kcore", help="Iterative k-core filter (0 = off).")
LayoutOpt = typer.Option("recbole", "--layout", help="SASRec block layout: recbole (post-LN) | kang (the "
                         "original code's: pre-LN, embeddings x sqrt(d), a final LayerNorm).")
BatchingOpt = typer.Option("random", "--batching", help="random | length (batches of similar lengths: "
                           "less padding, lower accuracy; the default before 2026-11-24).")
LrDropsOpt = typer.Option(0, "--lr-drops", help="After validation stalls for --patience epochs, go on from the best "
                          "weights at a quarter of the learning rate (fresh Adam); this many times. --epochs caps "
                          "all stages together.")
DropKnownOpt = typer.Option(False, "--drop-known", help="Also drop generated sequences that copy a prefix of a training "
                            "row (real or earlier synthetic): they add no new transition, only weight (beyond the paper).")
SeedMaxItemsOpt = typer.Option(0, "--seed-max-items", help="Seed only from sequences of at most this many training items, "
                               "the sparse users (beyond the paper; 0: every seed).")
MinLenOpt = typer.Option(3, "--min-len", help="Keep generated sequences of at least this many items (the paper's 3).")


def epoch_line(epoch: int, loss: float, row: dict, is_best: bool, lr: float) -> str:
    """One epoch's progress; the learning rate is named once --lr-drops has lowered it from `lr`."""
    lowered = f" lr {row['lr']:g}" if row.get("lr", lr) != lr else ""
    return f"epoch {epoch} loss {loss:.3f} valid ndcg@20 {row['ndcg@20']:.4f}{'*' if is_best else ''}{lowered}"


def metrics_table(title: str, rows: dict[str, dict], keys=("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr")) -> Table:
    table = Table(title=title)
    table.add_column("")
    for k in keys:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{m[k]:.4f}" if k in m else "-" for k in keys))
    return table


def out_dir(path: Path) -> Path:
    """The run directory `--out`, made with its missing parents, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RsirError(f"--out {path}: exists and is not a directory")
    make_dir(path, f"--out {path}")
    try:
        probe = path / ".rsir-write-probe"
        probe.touch()  # os.access trusts root; the filesystem may not (read-only mounts)
        probe.unlink()
    except OSError as e:
        raise RsirError(f"--out {path}: cannot create ({e.strerror})") from None
    return path
