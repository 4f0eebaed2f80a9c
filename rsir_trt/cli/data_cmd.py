from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..data import add_synthetic_file, open_dataset
from ..data.recbole_export import write_recbole_benchmark
from . import guarded
from .common import DataOpt, FormatOpt, KcoreOpt, MaxLenOpt, console

app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)


@app.command("stats")
@guarded
def stats(data: Optional[str] = DataOpt, fmt: str = FormatOpt, max_len: int = MaxLenOpt, kcore: int = KcoreOpt):
    """Users, items, interactions, lengths and density after truncation."""
    s = open_dataset(data, fmt, max_len=max_len, k_core=kcore).stats()
    table = Table(title=f"{s['name']} (last {max_len} items per user)")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for k, v in s.items():
        if k != "name":
            table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)


@app.command("export-recbole")
@guarded
def export_recbole(
    data: Optional[str] = DataOpt, fmt: str = FormatOpt, max_len: int = MaxLenOpt, kcore: int = KcoreOpt,
    extra: list[Path] = typer.Option([], "--extra", help="Synthetic rows (`generate`'s output, or a loop's "
                                     "iterK/synthetic.txt); repeat for several rounds."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write; its name is the RecBole dataset name."),
):
    """The data plus synthetic rows as RecBole's pre-split sequential benchmark (same split:
    synthetic rows train only; validation and test are the real users' own targets)."""
    ds = open_dataset(data, fmt, max_len=max_len, k_core=kcore)
    for path in extra:
        add_synthetic_file(ds, path, max_len)
    table = Table(title=f"{ds.name} + {len(ds.synthetic):,} synthetic rows as RecBole benchmark files")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for path, n in write_recbole_benchmark(out, ds).items():
        table.add_row(str(path), f"{n:,}" if n is not None else "config")
    console.print(table)
