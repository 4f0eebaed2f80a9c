"""TensorRT backend (10.x and 11.x): build a `.plan` from the step ONNX, run it with
named tensors and `execute_async_v3` on torch-owned CUDA buffers.

TensorRT is imported lazily; everything that does not need it (profile shapes, the
precision plan, metadata) is plain Python and tested here without it. The real path
is verified on a GPU host with `python benchmarks/verify_tensorrt.py` (README)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..engine_meta import STEP_INPUTS, EngineMeta, read_plan_meta, sidecar
from ..errors import RsirError
from ..step import io_names
from .base import Runtime, StepOut


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise RsirError("TensorRT is not installed (pip install tensorrt on a CUDA host); "
                        "use --backend onnxruntime") from None
    return trt


def require_cuda():
    import torch
    if not torch.cuda.is_available():
        raise RsirError("the tensorrt backend needs a CUDA GPU and a CUDA build of torch; none found")
    return torch


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def precision_plan(major: int, precision: str) -> dict:
    """How to get `precision` out of TensorRT `major`.

    10.x: fp32 ONNX, FP16 builder flag for fp16 (weakly typed). 11.x removed the flags:
    networks are strongly typed, so fp16 must be baked into the ONNX at export."""
    if precision not in ("fp32", "fp16"):
        raise RsirError(f"--precision: {precision!r} is not one of fp32, fp16")
    if major < 10:
        raise RsirError(f"TensorRT {major}.x is too old: 10.x or 11.x is required")
    if major == 10:
        return {"export_dtype": "fp32", "fp16_flag": precision == "fp16", "strongly_typed": False}
    return {"export_dtype": precision, "fp16_flag": False, "strongly_typed": True}


def apply_precision(config, trt, plan: dict) -> None:
    """The builder flags of a precision plan. TF32 is on by default in TensorRT 10 and 11
    and rounds fp32 matmul inputs to 10-bit mantissas, so fp32 logits would no longer
    equal ONNX Runtime's and torch's (nor the fidelity counts and argmaxes made from
    them): it is always cleared."""
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan["fp16_flag"]:
        config.set_flag(trt.BuilderFlag.FP16)


def profile_shapes(shapes: dict[str, tuple], min_batch: int, opt_batch: int, max_batch: int) -> dict:
    """One optimization profile over the batch dimension (dim 0, -1 in the ONNX): state
    rows for the state inputs and the cache, head rows for row / seed_items / tau, which
    range over the same sizes (head rows are at least as many, at most `capacity`)."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise RsirError(f"batch profile needs 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")
    out = {}
    for name, shape in shapes.items():
        rest = tuple(int(d) for d in shape[1:])
        if any(d < 1 for d in rest):
            raise RsirError(f"input {name} has a dynamic dimension besides batch: {shape}")
        out[name] = tuple((b, *rest) for b in (min_batch, opt_batch, max_batch))
    return out


def onnx_input_shapes(onnx_path: Path) -> dict[str, tuple]:
    import onnx
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {i.name: tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
            for i in graph.input}


def build_plan(onnx_path: Path, plan_path: Path, meta: EngineMeta, min_batch=1, opt_batch=256,
               max_batch=4096, precision="fp32", workspace_gib=4.0) -> dict:
    """Parse, profile, build, serialize. A timing cache beside the plan speeds rebuilds."""
    trt = import_tensorrt()
    require_cuda()
    plan = precision_plan(trt_major(trt.__version__), precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan["strongly_typed"] and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RsirError(f"{onnx_path}: TensorRT cannot parse it: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    apply_precision(config, trt, plan)
    cache_path = Path(str(plan_path) + ".timing-cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(onnx_input_shapes(onnx_path), min_batch, opt_batch, max_batch).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RsirError(f"{onnx_path}: TensorRT build failed (see the log above)")
    with atomic_path(plan_path) as tmp:
        Path(tmp).write_bytes(bytes(serialized))
    with atomic_path(cache_path) as tmp:
        Path(tmp).write_bytes(bytes(config.get_timing_cache().serialize()))
    meta.backend, meta.precision = "tensorrt", precision
    meta.versions["tensorrt"] = trt.__version__
    meta.batch_profile = [min_batch, opt_batch, max_batch]
    with atomic_path(sidecar(plan_path)) as tmp:
        Path(tmp).write_text(json.dumps(meta.to_dict(), indent=1))
    return plan


def check_batch(meta: EngineMeta, batch: int, where) -> None:
    """A plan runs only the batch sizes of its optimization profile: refuse more rows than
    it was built for in one line, before TensorRT fails deep inside a step."""
    if meta.batch_profile and batch > meta.batch_profile[2]:
        raise RsirError(f"{where}: built for at most {meta.batch_profile[2]} rows a step "
                        f"(build-engine --max-batch), asked for {batch}: lower the batch (generate --batch-size, "
                        "loop --gen-batch, bench --batch) or rebuild with a larger --max-batch")


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, plan_path: str | Path):
        self.plan_path = plan_path = Path(plan_path)
        self.meta = read_plan_meta(plan_path)
        trt = import_tensorrt()
        self.torch = torch = require_cuda()
        self.trt_runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.trt_runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:
            raise RsirError(f"{plan_path}: TensorRT cannot deserialize it (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        # bind by the contract's names, not by TensorRT's enumeration order
        self.inputs, self.outputs = io_names(self.meta.model, self.meta.topk, self.meta.with_logits)
        if sorted(names) != sorted(self.inputs + self.outputs):
            raise RsirError(f"{plan_path}: its tensors do not match its metadata (rebuild the engine)")
        self.stream = torch.cuda.Stream()
        self.dev = torch.device("cuda")
        self.cache: list = []
        self.dtypes = {n: self._torch_dtype(self.engine.get_tensor_dtype(n), trt) for n in names}

    def _torch_dtype(self, dt, trt):
        t = self.torch
        return {trt.float32: t.float32, trt.float16: t.float16, trt.int64: t.int64,
                trt.int32: t.int32, trt.bool: t.bool}[dt]

    def allocate(self, batch: int) -> None:
        check_batch(self.meta, batch, self.plan_path)
        t = self.torch
        with t.cuda.stream(self.stream):
            self.cache = [t.zeros((batch, *tuple(self.engine.get_tensor_shape(n))[1:]), dtype=self.dtypes[n],
                                  device=self.dev) for n in self.inputs[len(STEP_INPUTS):]]

    def step(self, item, pos, traj, row, seed_items, tau) -> StepOut:
        t, ctx = self.torch, self.context
        B = len(item)   # state rows; the head outputs' shapes (head rows) come from the context
        # copies, outputs and the run all on one stream, so the engine never reads an
        # input before its copy has landed
        with t.cuda.stream(self.stream):
            ins = [t.from_numpy(a).to(self.dev) for a in (item, pos, traj, row, seed_items, tau)] + [c[:B] for c in self.cache]
            outs = []
            for name, tensor in zip(self.inputs, ins):
                if not ctx.set_input_shape(name, tuple(tensor.shape)):
                    raise RsirError(f"{self.plan_path}: TensorRT refuses shape {tuple(tensor.shape)} for {name}")
                ctx.set_tensor_address(name, tensor.data_ptr())
            for name in self.outputs:
                o = t.empty(tuple(ctx.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.dev)
                ctx.set_tensor_address(name, o.data_ptr())
                outs.append(o)
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RsirError("TensorRT execute_async_v3 failed")
            self.write_rows(outs[self.n_head:], t.arange(B, device=self.dev), ins[1])
            head = [o.cpu() for o in outs[: self.n_head]]
        self.stream.synchronize()
        return self.head([h.numpy() for h in head])

    def index(self, rows: np.ndarray):
        return self.torch.from_numpy(rows).to(self.dev)

    def move(self, src: np.ndarray, dst: np.ndarray, filled: int) -> None:
        with self.torch.cuda.stream(self.stream):  # ordered with the steps on the same stream
            super().move(src, dst, filled)

    def describe(self) -> dict:
        return {"runtime": self.name, "device": self.torch.cuda.get_device_name(),
                "precision": self.meta.precision}
