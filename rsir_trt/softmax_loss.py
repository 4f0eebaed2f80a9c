"""Full-softmax cross-entropy over the item vocabulary, fused by hand.

`F.cross_entropy(h @ W.T, t)` materialises the N x V logits, then a log-softmax copy,
a zero-filled N x V gradient for the NLL and a log-softmax backward: four N x V buffers
per batch, which on CPU cost as much as the matmuls (profiled on Sports, V = 18,358).
Here one N x V buffer holds the logits, is turned into the softmax in place, and
becomes the logits' gradient in backward: the same loss, 1.3-1.7x faster per training
step on Sports (benchmarks/train_speed.py)."""
from __future__ import annotations

import torch

from .wide_matmul import all_item_scores


class _FullSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, W: torch.Tensor, t: torch.Tensor, share: torch.Tensor | None) -> torch.Tensor:
        z = all_item_scores(h, W)                     # [N, V], the only N x V buffer
        z[:, 0] = float("-inf")                       # padding is never a next item
        target = z.gather(1, t[:, None]).squeeze(1)
        top = z.amax(1, keepdim=True)
        z.sub_(top).exp_()                            # exp(z - max), in place
        total = z.sum(1, keepdim=True)
        per_row = total.log().squeeze(1) + top.squeeze(1) - target
        loss = per_row.mean() if share is None else (per_row * share).sum()
        ctx.save_for_backward(h, W, t, z, total, share)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, W, t, z, total, share = ctx.saved_tensors
        n = len(t)
        if share is None:
            g = z.mul_(grad / n / total)              # softmax * grad / N, in place
            g[torch.arange(n), t] -= grad / n         # minus the one-hot target
        else:
            scale = grad * share
            g = z.mul_(scale[:, None] / total)
            g[torch.arange(n), t] -= scale
        grad_h = g @ W if ctx.needs_input_grad[0] else None
        grad_W = g.T @ h if ctx.needs_input_grad[1] else None
        return grad_h, grad_W, None, None


def full_softmax_ce(h: torch.Tensor, W: torch.Tensor, t: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over rows of -log softmax(h @ W.T)[t], item 0 (padding) excluded; with
    `weights` (one per row) the weighted mean. Backward reuses the forward's buffer, so
    call backward at most once per loss."""
    return _FullSoftmaxCE.apply(h, W, t, None if weights is None else weights / weights.sum())
