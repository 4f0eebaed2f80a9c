"""The decode step in eager PyTorch (CPU or CUDA), from a checkpoint. Same module as the
exported graph (step.py), so parity with ONNX Runtime is exact up to float rounding."""
from __future__ import annotations

import numpy as np
import torch

from ..step import DecodeStep
from .base import Runtime, StepOut


class TorchRuntime(Runtime):
    name = "torch"
    in_torch = True

    def __init__(self, model, meta, device: str = "cpu"):
        self.meta = meta
        self.device = torch.device(device)
        self.step_module = DecodeStep(model.to(self.device), topk=meta.topk, with_logits=meta.with_logits).eval()
        self.shapes = model.cache_shapes
        self.cache: list[torch.Tensor] = []

    def allocate(self, batch: int) -> None:
        self.cache = [torch.zeros(s, device=self.device) for _, s in self.shapes(batch)]

    @torch.inference_mode()
    def step(self, item, pos, traj, row, seed_items, tau) -> StepOut:
        dev = self.device
        t = [torch.from_numpy(a).to(dev) for a in (item, pos, traj, row, seed_items, tau)]
        n = len(item)
        out = self.step_module(*t, *(c[:n] for c in self.cache))
        self.write_rows(out[self.n_head:], torch.arange(n, device=dev), t[1])
        host = [o.cpu().numpy() for o in out[:self.n_head]]
        return self.head(host)

    def index(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(rows).to(self.device)

    def describe(self) -> dict:
        return {"runtime": self.name, "device": str(self.device), "threads": torch.get_num_threads()}
