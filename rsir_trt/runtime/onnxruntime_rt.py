"""ONNX Runtime: CPU provider by default; CUDA / TensorRT providers when asked for and present."""
from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from ..engine_meta import STEP_INPUTS, onnx_props_meta
from ..errors import RsirError
from ..system import cpu_threads
from .base import Runtime, StepOut

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def session_providers(provider: str) -> list:
    """The session's providers, CPU last as the fallback. The CUDA provider runs fp32
    MatMul in TF32 unless told otherwise (its `use_tf32` defaults to 1), which would
    round the logits' inputs and break the parity with the CPU engines: it is turned off."""
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    first = (PROVIDERS[provider], {"use_tf32": "0"}) if provider == "cuda" else PROVIDERS[provider]
    return [first, "CPUExecutionProvider"]


def zeroed_on_huge_pages(shape: tuple) -> np.ndarray:
    """np.zeros(shape, float32), on transparent huge pages where Linux offers them. Generation
    writes the KV cache row by row, and on 4 KB pages the first touches (page faults,
    costly in a VM) were 0.1 s of a one-worker whole-Beauty run of 1.0-1.2 s (docs/experiments.md,
    session 29); 2 MB pages take 500x fewer faults."""
    nbytes = int(np.prod(shape)) * 4
    if nbytes < 1 << 21 or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.zeros(shape, dtype=np.float32)
    buf = mmap.mmap(-1, nbytes)   # anonymous: zero-filled
    buf.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(buf, dtype=np.float32).reshape(shape)


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, path: str | Path, provider: str = "cpu", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RsirError("onnxruntime is not installed: pip install 'rsir-trt[cpu]' (or [gpu])") from None
        path = Path(path)
        if provider not in PROVIDERS:
            raise RsirError(f"--provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
        if PROVIDERS[provider] not in ort.get_available_providers():
            raise RsirError(f"--provider {provider}: {PROVIDERS[provider]} is not available in this onnxruntime "
                            f"({', '.join(ort.get_available_providers())})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.inter_op_num_threads = 1
        # spinning threads fight torch (and other sessions) for the 2 cores: measured 2-3x slower
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = session_providers(provider)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # ORT raises its own exception types for invalid graphs
            raise RsirError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:160]})") from None
        # read by the session, not by the `onnx` package, whose import (0.4-0.9 s) `generate` can skip
        self.meta = onnx_props_meta(self.session.get_modelmeta().custom_metadata_map, path)
        self.path, self.provider, self.threads = path, provider, so.intra_op_num_threads
        # on CPU one single-threaded session per core, each running its own rows, beat one
        # session over all cores: the policy's Python and the single-threaded kernels
        # overlap the other worker's engine call (README, Generation speed)
        self.default_workers = self.threads if provider == "cpu" else 1
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.cache: list[np.ndarray] = []
        self._workers: dict[int, list[OnnxRuntime]] = {}
        self.cache_shapes = [tuple(i.shape[1:]) for i in self.session.get_inputs()[len(STEP_INPUTS):]]

    def workers(self, k: int) -> list["OnnxRuntime"]:
        if k == 1:
            return [self]
        if k not in self._workers:  # made once per runtime, so repeated runs reuse the sessions
            self._workers[k] = [OnnxRuntime(self.path, self.provider, max(1, self.threads // k)) for _ in range(k)]
        return self._workers[k]

    def allocate(self, batch: int) -> None:
        """Cache buffers for `batch` state rows, kept for the runtime's next generation when
        they are large enough: a slot's old contents are never read (positions at or past
        a row's `pos` are masked, a recurrent state is reset at pos 0), and fresh buffers
        cost their page faults again (zeroed_on_huge_pages)."""
        if not (self.cache and len(self.cache[0]) >= batch):
            self.cache = [zeroed_on_huge_pages((batch, *s)) for s in self.cache_shapes]

    def run(self, item, pos, traj, row, seed_items, tau) -> list[np.ndarray]:
        n = len(item)
        feed = dict(zip(self.inputs, (item, pos, traj, row, seed_items, tau, *(c[:n] for c in self.cache))))
        out = self.session.run(None, feed)
        self.write_rows(out[self.n_head:], np.arange(n), pos)
        return out[: self.n_head]

    def step(self, item, pos, traj, row, seed_items, tau) -> StepOut:
        return self.head(self.run(item, pos, traj, row, seed_items, tau))

    def describe(self) -> dict:
        return {"runtime": self.name, "provider": self.provider, "threads": self.threads}
