"""Checkpoint -> engine file: ONNX (for ONNX Runtime) and, on CUDA hosts, a TensorRT plan."""
from __future__ import annotations

from pathlib import Path

from . import checkpoint
from .engine_meta import EngineMeta
from .errors import RsirError
from .export import export_onnx

SUFFIX = {"onnxruntime": ".onnx", "tensorrt": ".plan"}


def tensorrt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "tensorrt" if tensorrt_usable() else "onnxruntime"
    if backend not in SUFFIX:
        raise RsirError(f"--backend: {backend!r} cannot build engines (auto, onnxruntime, tensorrt)")
    return backend


def engine_path(stem: Path, backend: str) -> Path:
    return Path(stem).with_suffix(SUFFIX[resolve_backend(backend)])


def engine_is_current(path: Path) -> bool:
    """Whether this rsir-trt can run the engine file (not one of an older format, a missing
    or an unreadable file)."""
    from .engine_meta import read_onnx_meta, read_plan_meta
    try:
        (read_plan_meta if Path(path).suffix == ".plan" else read_onnx_meta)(Path(path))
        return True
    except RsirError:
        return False


def build_engine(ckpt: Path, stem: Path, backend: str = "auto", topk: int = 0, precision: str = "fp32",
                 batch: tuple[int, int, int] = (1, 256, 4096), dynamo: bool = False) -> dict:
    """Export (and for TensorRT compile) the checkpoint's decode step; returns a summary."""
    backend = resolve_backend(backend)
    if topk < 0:
        raise RsirError(f"--topk must be >= 0, got {topk}")
    model, payload = checkpoint.load_model(ckpt)
    if topk > model.config.num_items - 1:
        raise RsirError(f"--topk {topk} exceeds the vocabulary ({model.config.num_items - 1} items)")
    meta = EngineMeta(backend="onnxruntime", model=payload["model"], weights_hash=payload["weights_hash"],
                      item_tokens=payload["item_tokens"], topk=topk, precision="fp32", data=payload.get("data", {}))
    stem = Path(stem)
    onnx_path = stem.with_suffix(".onnx")
    summary = {"onnx": str(onnx_path)}
    if backend == "tensorrt":
        from .runtime.tensorrt_rt import build_plan, import_tensorrt, precision_plan, trt_major
        plan = precision_plan(trt_major(import_tensorrt().__version__), precision)
        if plan["export_dtype"] == "fp16":  # TensorRT 11: strongly typed, bake fp16 in
            model = model.half()
            meta.precision = "fp16"
        summary["export_seconds"] = export_onnx(model, onnx_path, meta, dynamo=dynamo)
        build_plan(onnx_path, stem.with_suffix(".plan"), meta, *batch, precision=precision)
        summary["engine"] = str(stem.with_suffix(".plan"))
    else:
        if precision != "fp32":
            raise RsirError("--precision fp16 is for TensorRT; ONNX Runtime engines are fp32 on CPU")
        summary["export_seconds"] = export_onnx(model, onnx_path, meta, dynamo=dynamo)
        summary["engine"] = str(onnx_path)
    summary.update(backend=backend, weights_hash=meta.weights_hash, topk=topk, s_max=model.config.max_len,
                   vocabulary=model.config.num_items - 1)
    return summary
