"""Next-item training with early stopping on validation NDCG@20.

Fast on 2 CPU cores: each batch is padded only to its own longest sequence and the
output layer runs only at real positions."""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .data import SequenceData
from .errors import RsirError
from .evaluate import evaluate, pad
from .softmax_loss import full_softmax_ce
from .system import configure_cpu


BATCHINGS = ("random", "length")
ENCODE_PARTS = 4   # a random batch is encoded in this many groups of similar length
LR_DROP = 4        # --lr-drops divides the learning rate by this at each stall


@dataclass
class TrainConfig:
    loss: str = "ce"           # ce: full softmax | sampled: uniform negatives shared by the batch
    negatives: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    seed: int = 0
    metric: str = "ndcg@20"    # validation metric for early stopping / model selection
    batching: str = "random"   # random | length: batches of similar lengths (see batches())
    lr_drops: int = 0          # restarts from the best weights at lr / LR_DROP after a stall (see train())
    synthetic_weight: float = 1.0   # loss weight of a synthetic row's positions (a real row's: 1)

    def check(self) -> None:
        if self.loss not in ("ce", "sampled"):
            raise RsirError(f"--loss: {self.loss!r} is not one of ce, sampled")
        if self.batching not in BATCHINGS:
            raise RsirError(f"--batching: {self.batching!r} is not one of {', '.join(BATCHINGS)}")
        for name in ("batch_size", "epochs", "negatives"):
            if getattr(self, name) < 1:
                raise RsirError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr_drops < 0:
            raise RsirError(f"--lr-drops must be >= 0, got {self.lr_drops}")
        if self.patience < 1:
            raise RsirError(f"--patience must be >= 1, got {self.patience}")
        if not self.lr > 0:
            raise RsirError(f"--lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise RsirError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.synthetic_weight < float("inf"):
            raise RsirError(f"--synthetic-weight must be > 0 and finite, got {self.synthetic_weight}")


@dataclass
class TrainResult:
    best_epoch: int
    valid: dict
    history: list = field(default_factory=list)
    seconds: float = 0.0
    epochs_run: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def batches(seqs: list[np.ndarray], batch_size: int, gen: torch.Generator, batching: str = "random",
            bucket: int = 50):
    """Shuffled batches, each padded to its own longest sequence (see batch_rows)."""
    for rows in batch_rows(seqs, batch_size, gen, batching, bucket):
        yield pad([seqs[i] for i in rows])


def batch_rows(seqs: list[np.ndarray], batch_size: int, gen: torch.Generator, batching: str = "random",
               bucket: int = 50):
    """The indices of each shuffled batch.

    "length" sorts within chunks of `bucket` batches by length (5x less padding on Amazon
    data), but then a batch of short sequences gets as large an Adam step as one of long
    ones, so a position in a short sequence weighs up to 17x more (Sports, batch 128: 256
    to 4,293 positions per batch; random batches hold 576-791, 5th-95th percentile). On
    Sports that cost 12-18% of test Recall@10 seed by seed (--layout kang, 3 seeds:
    0.0458 against 0.0525), so "random" is the default (encode_real keeps its padding
    cheap); "length" reproduces runs from before 2026-11-24."""
    order = torch.randperm(len(seqs), generator=gen).numpy()
    if batching == "random":
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]
        return
    lengths = np.array([len(s) for s in seqs])
    chunk = batch_size * bucket
    groups = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    for j in torch.randperm(len(groups), generator=gen).tolist():
        yield groups[j]


def halving(n: int, parts: int) -> list[int]:
    """Group sizes n/2, n/4, ... (the last takes the rest): the long tail of lengths gets
    the small groups. Sports, random batches of 128: the encoder sees 1.7x the real
    positions in 4 groups, 6.8x in one call (length batches: 1.1x)."""
    sizes, rest = [], n
    while len(sizes) < parts - 1 and rest > 1:
        sizes.append((rest + 1) // 2)
        rest -= sizes[-1]
    return sizes + [rest]


def encode_real(model, inputs: torch.Tensor, targets: torch.Tensor, parts: int, weights: torch.Tensor | None = None):
    """Hidden states, targets and (given one weight per row) weights at the real
    positions, [N, D], [N] and [N] or None.

    With parts > 1 the rows are encoded in that many groups of similar length, each cut
    to its own longest row: the encoders are causal and the rows right-padded, so the
    cut changes nothing, and a random batch (mixed lengths) then costs about what a
    length-sorted one does. Rows come out in length order; the losses are (weighted) means."""
    at = None if weights is None else weights[:, None].expand(targets.shape)
    if parts == 1:
        real = targets > 0
        return model.encode(inputs)[real], targets[real], None if at is None else at[real]
    lengths = (targets > 0).sum(1)
    hs, ts, ws = [], [], []
    for rows in torch.argsort(lengths, stable=True).split(halving(len(inputs), parts)):
        cut = int(lengths[rows].max())
        x, t = inputs[rows, :cut], targets[rows, :cut]
        hs.append(model.encode(x)[t > 0])
        ts.append(t[t > 0])
        if at is not None:
            ws.append(at[rows, :cut][t > 0])
    return torch.cat(hs), torch.cat(ts), torch.cat(ws) if ws else None


def next_item_loss(model, batch: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """The batch's mean next-item loss over its real positions; with `weights` (one per
    row) the weighted mean."""
    # length batches are encoded whole, as before random batches existed (bit-identical runs)
    parts = ENCODE_PARTS if cfg.batching == "random" else 1
    h, t, w = encode_real(model, batch[:, :-1], batch[:, 1:], parts, weights)   # only real positions
    W = model.item_weight
    if cfg.loss == "ce":
        return full_softmax_ce(h, W, t, w)
    neg = torch.randint(1, W.shape[0], (cfg.negatives,), generator=gen)
    # F.embedding, not W[t]: indexing's backward (index_put accumulate) uses float atomic
    # adds across threads from 32,768 elements on, so repeated rows sum in a different
    # order each run; embedding's backward gives each thread its own rows, in index order.
    pos_logit = (h * F.embedding(t, W)).sum(-1, keepdim=True)
    neg_logit = h @ F.embedding(neg, W).T
    neg_logit = neg_logit.masked_fill(neg[None, :] == t[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    if w is None:
        return F.cross_entropy(logits, torch.zeros(len(t), dtype=torch.long))
    return (F.cross_entropy(logits, torch.zeros(len(t), dtype=torch.long), reduction="none") * w).sum() / w.sum()


def save_snapshot(path: Path, cfg: TrainConfig, n_seqs: int, model, opt, gen: torch.Generator, epoch: int,
                  best: float, best_epoch: int, best_state, history: list, seconds: float) -> None:
    """Everything the next epoch depends on, written atomically after each epoch, so a
    killed training resumes at the next epoch with the bits of an uninterrupted one."""
    state = {"config": asdict(cfg), "model_config": model.config.to_dict(), "sequences": n_seqs, "epoch": epoch,
             "model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
             "torch_rng": torch.get_rng_state(), "best": best, "best_epoch": best_epoch, "best_state": best_state,
             "history": history, "seconds": seconds}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_snapshot(path: Path, cfg: TrainConfig, model, n_seqs: int) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise RsirError(f"{path}: not a training snapshot ({str(e).splitlines()[0][:120]}); delete it to restart this training") from None
    if not isinstance(state, dict):
        raise RsirError(f"{path}: not a training snapshot (no state in it); delete it to restart this training")
    mine = (asdict(cfg), model.config.to_dict(), n_seqs)
    theirs = {"lr_drops": 0, "synthetic_weight": 1.0, **state["config"]} if isinstance(state.get("config"), dict) else None  # older snapshots
    if (theirs, state.get("model_config"), state.get("sequences")) != mine:
        raise RsirError(f"{path}: a snapshot of a different training (settings or data); delete it to restart this training")
    return state


def synthetic_row_weights(data: SequenceData, n_rows: int, weight: float) -> torch.Tensor | None:
    """One loss weight per training row: 1 for the real rows, `weight` for the synthetic
    ones (training_set() puts them last). None when that changes nothing, so runs
    without synthetic rows or at weight 1 keep the unweighted loss, bit for bit."""
    n_real = sum(len(s) >= 2 for s in data.train_sequences())
    if weight == 1 or n_real == n_rows:
        return None
    return torch.cat([torch.ones(n_real), torch.full((n_rows - n_real,), float(weight))])


def stalled(history: list[dict], best_epoch: int, lr: float, patience: int) -> bool:
    """No validation gain in the last `patience` epochs at learning rate `lr`."""
    # rows without "lr" are from before --lr-drops: all at the first learning rate
    stage_start = next((row["epoch"] for row in history if row.get("lr", lr) == lr), len(history) + 1)
    return len(history) - max(best_epoch, stage_start - 1) >= patience


def train(model, data: SequenceData, cfg: TrainConfig, progress=None, log=None, snapshot: Path | None = None) -> TrainResult:
    """Train in place; on return the model holds the best-validation weights.

    progress(epoch, loss, row, is_best) is called once per epoch (row: the epoch's history
    row, its learning rate and validation metrics). With `snapshot`
    the state after every epoch is kept in that file, and a training that finds the file
    continues after its epoch (the caller deletes it once the result is safe)."""
    cfg.check()
    configure_cpu()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    seqs = [s[-(model.config.max_len + 1):] for s in data.training_set() if len(s) >= 2]
    if not seqs:
        raise RsirError(f"{data.name}: no training sequence has 2 or more items")
    row_weights = synthetic_row_weights(data, len(seqs), cfg.synthetic_weight)
    best, best_epoch, best_state, history, done_before = -1.0, 0, None, [], 0.0
    saved = load_snapshot(Path(snapshot), cfg, model, len(seqs)) if snapshot is not None and Path(snapshot).exists() else None
    if saved:
        best, best_epoch, best_state, history, done_before = (saved["best"], saved["best_epoch"], saved["best_state"],
                                                              saved["history"], saved["seconds"])
    drops = len({cfg.lr, *(row.get("lr", cfg.lr) for row in history)}) - 1   # rates seen so far
    lr = cfg.lr / LR_DROP ** drops
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    if saved:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
    start = time.perf_counter() - done_before
    epoch = len(history)
    while epoch < cfg.epochs:
        if stalled(history, best_epoch, lr, cfg.patience):
            if drops == cfg.lr_drops:
                break
            # Validation stalled at this learning rate: go on from the best weights at a lower
            # one (Beauty, session 39: +5-7% valid NDCG@20 and test Recall@10 at one drop).
            drops += 1
            lr = cfg.lr / LR_DROP ** drops
            model.load_state_dict(best_state)
            opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        epoch += 1
        model.train()
        total, n = 0.0, 0
        for rows in batch_rows(seqs, cfg.batch_size, gen, cfg.batching):
            weights = None if row_weights is None else row_weights[torch.from_numpy(rows)]
            loss = next_item_loss(model, pad([seqs[i] for i in rows]), cfg, gen, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        if not np.isfinite(total):
            raise RsirError(f"training diverged in epoch {epoch} (loss {total / n}); lower --lr (now {cfg.lr})")
        valid = evaluate(model, data, "valid")
        score = valid[cfg.metric]
        is_best = score > best
        if is_best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        row = {"epoch": epoch, "lr": lr, "loss": total / n, "seconds": time.perf_counter() - start, **valid}
        history.append(row)
        if snapshot is not None:
            save_snapshot(Path(snapshot), cfg, len(seqs), model, opt, gen, epoch, best, best_epoch, best_state,
                          history, row["seconds"])
        if progress:
            progress(epoch, total / n, row, is_best)
        if log:
            log(row)
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_epoch=best_epoch, valid=history[best_epoch - 1] | {}, history=history,
                       seconds=time.perf_counter() - start, epochs_run=len(history))
