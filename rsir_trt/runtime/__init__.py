"""Engines that run the decode step: torch, onnxruntime, tensorrt; and the reference
(authors') algorithm. `open_runtime` picks one from a file and a backend name."""
from __future__ import annotations

from pathlib import Path

from ..errors import RsirError
from .base import Runtime, StepOut

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "reference")


def checkpoint_meta(payload: dict, topk: int = 0):
    from ..engine_meta import EngineMeta
    return EngineMeta(backend="torch", model=payload["model"], weights_hash=payload["weights_hash"],
                      item_tokens=payload["item_tokens"], topk=topk, data=payload.get("data", {}))


def open_runtime(path: str | Path, backend: str = "auto", provider: str = "cpu", threads: int | None = None,
                 topk: int = 0, device: str = "cpu"):
    """.onnx -> onnxruntime; .plan -> tensorrt; checkpoint (.pt / run dir) -> torch or reference."""
    path = Path(path)
    if backend not in BACKENDS:
        raise RsirError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if not path.exists():
        raise RsirError(f"--engine {path}: no such file")
    kind = {".onnx": "onnxruntime", ".plan": "tensorrt"}.get(path.suffix, "checkpoint")
    if backend == "auto":
        backend = "torch" if kind == "checkpoint" else kind
    if kind == "onnxruntime" and backend == "onnxruntime":
        from .onnxruntime_rt import OnnxRuntime
        return OnnxRuntime(path, provider=provider, threads=threads)
    if kind == "tensorrt" and backend == "tensorrt":
        from .tensorrt_rt import TensorRTRuntime
        return TensorRTRuntime(path)
    if kind == "checkpoint" and backend in ("torch", "reference"):
        from ..checkpoint import load_model
        model, payload = load_model(path)
        meta = checkpoint_meta(payload, topk)
        if backend == "reference":
            from .reference import ReferenceRuntime
            return ReferenceRuntime(model, meta)
        from .torch_rt import TorchRuntime
        return TorchRuntime(model, meta, device=device)
    raise RsirError(f"--engine {path}: a {kind} file cannot run on the {backend} backend "
                    "(.onnx: onnxruntime; .plan: tensorrt; checkpoint: torch or reference)")


__all__ = ["BACKENDS", "Runtime", "StepOut", "open_runtime", "checkpoint_meta"]
