from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..data import open_dataset
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
