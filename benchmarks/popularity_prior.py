"""Session 52's check of where RSIR's gain sits: is it what a global popularity prior gives?

Scores iteration K's model of each loop run with beta * log(1 + count) added to every item's
logit (count: the item's interactions in the real training prefixes), beta chosen on
validation NDCG@20 over a small grid, and prints one JSON line per run: validation NDCG@20 by
beta, the chosen beta, test Recall/NDCG@10 without and with it.

    RSIR_THREADS=1 python benchmarks/popularity_prior.py K RUN [RUN ...]"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from rsir_trt import checkpoint
from rsir_trt.data import open_dataset
from rsir_trt.evaluate import rank_users
from rsir_trt.system import configure_cpu
from rsir_trt.user_groups import training_counts
from rsir_trt.user_ranks import metrics_from_ranks

BETAS = (0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


class WithPrior(torch.nn.Module):
    """The model's scores plus beta * log_pop: one more hidden unit fixed at 1 whose item
    weight is beta * log_pop, so rank_users scores it as it scores any model."""

    def __init__(self, model, log_pop: torch.Tensor, beta: float):
        super().__init__()
        self.model, self.config = model, model.config
        self.item_weight = torch.cat([model.item_weight, beta * log_pop[:, None]], 1)

    def encode(self, x):
        h = self.model.encode(x)
        return torch.cat([h, torch.ones_like(h[..., :1])], -1)


def main(k: int, runs: list[str]) -> None:
    configure_cpu()
    for run in runs:
        model, payload = checkpoint.load_model(f"{run}/iter{k}/{json.load(open(f'{run}/config.json'))['student']}.pt")
        data = open_dataset(payload["data"]["source"], max_len=model.config.max_len, item_tokens=payload["item_tokens"])
        log_pop = torch.from_numpy(np.log1p(training_counts(data)).astype(np.float32))
        score = lambda beta, split: metrics_from_ranks(rank_users(WithPrior(model, log_pop, beta).eval(),
                                                                  *data.eval_inputs(split)))
        with torch.no_grad():
            valid = {beta: score(beta, "valid")["ndcg@20"] for beta in BETAS}
            best = max(BETAS, key=lambda b: (valid[b], -b))
            test = {beta: score(beta, "test") for beta in (0, best)}
        print(json.dumps({"run": run, "k": k, "valid_ndcg@20_by_beta": {b: round(v, 4) for b, v in valid.items()},
                          "beta": best, "test_r10_n10": [round(test[0]["recall@10"], 4), round(test[0]["ndcg@10"], 4)],
                          "with_prior": [round(test[best]["recall@10"], 4), round(test[best]["ndcg@10"], 4)]}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
