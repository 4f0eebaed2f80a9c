from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import fault
from ..atomic import write_json
from ..data import check_trained_on, identity, open_dataset
from ..errors import RsirError
from ..system import machine
from .common import BatchingOpt, DataOpt, FormatOpt, KcoreOpt, LayoutOpt, LrDropsOpt, MaxLenOpt, console, epoch_line, metrics_table, out_dir

if TYPE_CHECKING:   # torch: the commands import it when they run
    from ..train import TrainConfig


def fit(model, data, cfg: TrainConfig, title: str, quiet: bool = False, snapshot: Optional[Path] = None):
    """Train with a rich progress bar; returns the TrainResult."""
    from ..train import train   # torch: loaded by the commands that use it
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task(title, total=cfg.epochs, info="")

        def progress(epoch, loss, row, is_best):
            info = epoch_line(epoch, loss, row, is_best, cfg.lr)
            bar.update(task, completed=epoch, info=info)
            if not console.is_terminal and not quiet:  # logs of background runs get one line per epoch
                console.print(info)
            fault.point(f"train:epoch{epoch}")
        return train(model, data, cfg, progress=progress, snapshot=snapshot)


def train_cmd(
    data: Optional[str] = DataOpt,
    fmt: str = FormatOpt,
    model: str = typer.Option("sasrec", "--model", help="sasrec | gru4rec"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<data>-<model>)."),
    max_len: int = MaxLenOpt,
    kcore: int = KcoreOpt,
    dim: int = typer.Option(64, "--dim"),
    layers: int = typer.Option(2, "--layers"),
    heads: int = typer.Option(2, "--heads"),
    ffn_mult: int = typer.Option(4, "--ffn-mult", help="SASRec feed-forward width in multiples of --dim (RecBole 4, the SASRec paper 1)."),
    dropout: float = typer.Option(0.5, "--dropout"),
    layout: str = LayoutOpt,
    loss: str = typer.Option("ce", "--loss", help="ce (full softmax) | sampled"),
    negatives: int = typer.Option(256, "--negatives", help="Uniform negatives for --loss sampled."),
    lr: float = typer.Option(2e-3, "--lr"),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="Adam's L2 penalty."),
    batch_size: int = typer.Option(128, "--batch-size"),
    batching: str = BatchingOpt,
    epochs: int = typer.Option(200, "--epochs"),
    patience: int = typer.Option(10, "--patience"),
    lr_drops: int = LrDropsOpt,
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed training after its last finished epoch."),
):
    """Train a sequential recommender; keeps the best-validation checkpoint, reports test."""
    from .. import checkpoint
    from ..evaluate import evaluate
    from ..models import ModelConfig, create_model
    from ..train import TrainConfig
    ds = open_dataset(data, fmt, max_len=max_len, k_core=kcore)
    cfg = TrainConfig(loss=loss, negatives=negatives, lr=lr, weight_decay=weight_decay, batch_size=batch_size, epochs=epochs,
                      patience=patience, lr_drops=lr_drops, seed=seed, batching=batching)
    mcfg = ModelConfig(kind=model, num_items=ds.num_items, max_len=max_len, dim=dim, layers=layers,
                       heads=heads, ffn_mult=ffn_mult, dropout=dropout, attn_dropout=dropout, layout=layout)
    net = create_model(mcfg, seed=seed)  # bad model settings fail before --out is created
    cfg.check()
    default = f"runs/{ds.name}-{model}"
    snapshot = Path(out or default) / "train-state.pt"   # the state after each epoch, until the checkpoint
    if resume and not snapshot.exists():  # checked before --out is created
        raise RsirError(f"--resume: {snapshot} does not exist (nothing to resume)")
    out = out_dir(Path(out or default))
    if not resume:
        snapshot.unlink(missing_ok=True)
    result = fit(net, ds, cfg, f"{model} on {ds.name}", snapshot=snapshot)
    test = evaluate(net, ds, "test")
    data_info = {"source": data, "format": fmt, "max_len": max_len, "kcore": kcore, **identity(ds)}
    checkpoint.save(out / "model.pt", net, ds.item_tokens, data=data_info, train=cfg.__dict__,
                    result={"best_epoch": result.best_epoch, "seconds": result.seconds,
                            "epochs_run": result.epochs_run})
    metrics = {"data": ds.stats(), "model": mcfg.to_dict(), "train": cfg.__dict__,
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "seconds": round(result.seconds, 1), "valid": result.valid, "test": test, "machine": machine()}
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", result.history)
    snapshot.unlink()
    console.print(metrics_table(f"{model} on {ds.name}: best epoch {result.best_epoch} of "
                                f"{result.epochs_run}, {result.seconds:.0f} s",
                                {"valid": result.valid, "test": test}))
    console.print(f"checkpoint: {out / 'model.pt'}")


def evaluate_cmd(
    ckpt: Path = typer.Argument(..., help="Checkpoint file or run directory."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset (default: the one it was trained on)."),
    fmt: str = FormatOpt,
    split: str = typer.Option("test", "--split", help="valid | test"),
    json_out: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    other_data: bool = typer.Option(False, "--other-data", help="Evaluate on data other than the training data (same item catalogue)."),
    by_length: Optional[str] = typer.Option(None, "--by-length", help="Also by the users' history length, in buckets "
                                            "up to these lengths (e.g. 5,10,20)."),
    by_popularity: Optional[str] = typer.Option(None, "--by-popularity", help="Also by the target's popularity rank "
                                                "in the training data, in buckets up to these ranks (e.g. 100,1000)."),
):
    """Full-ranking Recall/NDCG@5/10/20 and MRR of a checkpoint, history items excluded."""
    from .. import checkpoint
    from ..evaluate import rank_users
    from ..user_groups import HISTORY, POPULARITY, metrics_by_group, parse_edges, target_popularity
    from ..user_ranks import metrics_from_ranks
    groupings = [(g, parse_edges(text, g)) for g, text in ((HISTORY, by_length), (POPULARITY, by_popularity))
                 if text is not None]
    net, payload = checkpoint.load_model(ckpt)
    info = payload.get("data", {})
    ds = open_dataset(data or info.get("source"), fmt if data else info.get("format", "auto"),
                      max_len=info.get("max_len", net.config.max_len), k_core=info.get("kcore", 0),
                      item_tokens=payload["item_tokens"])
    check_trained_on(info, ds, f"--data {data}" if data else str(ckpt), other_data)
    inputs, targets = ds.eval_inputs(split)
    ranks = rank_users(net, inputs, targets)
    m = metrics_from_ranks(ranks)
    title = f"{net.config.kind} on {ds.name} ({split})"
    values = {HISTORY: [len(s) for s in inputs], POPULARITY: target_popularity(ds, split) if by_popularity else None}
    for g, edges in groupings:
        m[g.section] = metrics_by_group(ranks, values[g], edges, g.key)
    if json_out:
        console.print_json(json.dumps(m))
    for g, edges in [] if json_out else groupings:
        rows = {f"{g.column} {r[g.key]} ({r['users']:,} users)": r for r in m[g.section][:-1]}
        console.print(metrics_table(f"{title}, by {g.title}", {**rows, f"all ({len(inputs):,} users)": m}))
    if not json_out and not groupings:
        console.print(metrics_table(title, {split: m}))
