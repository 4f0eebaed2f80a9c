"""Checkpoints carry everything needed to reload: model config, weights, the item id
mapping, and how they were trained."""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_path
from .errors import RsirError
from .models import ModelConfig, create_model

FORMAT = "rsir-trt/checkpoint/1"


def weights_hash(state_dict) -> str:
    """sha256 over names and raw bytes of the weights: identifies a model exactly."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def save(path, model, item_tokens: list[str], **extra) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "model": model.config.to_dict(), "state_dict": state,
               "item_tokens": list(item_tokens), "weights_hash": weights_hash(state), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise RsirError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; say so plainly, not torch's hint
        raise RsirError(f"{path}: not a readable rsir-trt checkpoint (not a PyTorch zip archive, or "
                        "truncated; engines end in .onnx or .plan)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for garbage (even IndexError)
        raise RsirError(f"{path}: not a readable rsir-trt checkpoint ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RsirError(f"{path}: not a rsir-trt checkpoint (no '{FORMAT}' marker)")
    payload["path"] = str(path)
    return payload


def load_model(path):
    """-> (model in eval mode, checkpoint payload)."""
    ckpt = load(path)
    model = create_model(ModelConfig.from_dict(ckpt.get("model") or {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise RsirError(f"{ckpt['path']}: weights do not fit its model config ({str(e).splitlines()[0][:120]})") from None
    bad = [name for name, t in ckpt["state_dict"].items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # a diverged model would generate and score garbage
        raise RsirError(f"{ckpt['path']}: non-finite weights in {bad[0]} (a diverged training?)")
    return model.eval(), ckpt
