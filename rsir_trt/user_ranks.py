"""Each test user's rank of the target, recorded by the loop for every model it trains.

The ranks give, without the model or torch, the metrics (`metrics_from_ranks`) of all
users or of any subset (by history length or target popularity: user_groups.py), and how far a round's change
stands out from the test users' sampling noise (`change_interval`)."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import RsirError

KS = (5, 10, 20)


def ranks_path(iteration_dir: Path, kind: str) -> Path:
    return Path(iteration_dir) / f"test-ranks-{kind}.npz"


def save(path: Path, ranks: np.ndarray, history_lengths) -> None:
    """The 0-based test ranks per user, in the data's user order, and each user's number
    of items before the test target."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ranks=np.asarray(ranks, dtype=np.int32), history=np.asarray(history_lengths, dtype=np.int32))


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as z:
            return z["ranks"], z["history"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RsirError(f"{path}: not a test-ranks file ({e or type(e).__name__})") from None


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """Recall@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2), MRR = 1 / (rank + 1),
    averaged over users (evaluate.py defines the ranks)."""
    out = {}
    for k in ks:
        for name in ("recall", "ndcg"):
            out[f"{name}@{k}"] = float(per_user(ranks, f"{name}@{k}").mean())
    out["mrr"] = float((1.0 / (np.asarray(ranks, dtype=np.float64) + 1)).mean())
    return out


def per_user(ranks: np.ndarray, key: str) -> np.ndarray:
    """Each user's share of metric `key` ('recall@10', 'ndcg@20'): the metric is their mean."""
    name, k = key.split("@")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < int(k)
    return hit / np.log2(ranks + 2) if name == "ndcg" else hit.astype(np.float64)


def change_interval(now: np.ndarray, base: np.ndarray, key: str) -> tuple[float, float]:
    """The relative change of metric `key` from `base`'s ranks to `now`'s (the same users),
    in percent, and the half-width of its 95% interval over the test users: the delta
    method for a ratio of paired means. It measures the test set's sampling noise only,
    not the spread over training seeds (`compare` over seeds gives that)."""
    a, b = per_user(base, key), per_user(now, key)
    if len(a) != len(b):
        raise RsirError(f"change_interval: {len(b)} users against {len(a)}")
    ma, mb = a.mean(), b.mean()
    if ma == 0:
        return 0.0, 0.0
    cov = np.cov(a, b, ddof=1) if len(a) > 1 else np.zeros((2, 2))
    var = (cov[1, 1] / ma**2 - 2 * mb * cov[0, 1] / ma**3 + mb**2 * cov[0, 0] / ma**4) / len(a)
    return 100 * (mb / ma - 1), 100 * 1.96 * math.sqrt(max(var, 0.0))
