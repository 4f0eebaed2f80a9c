"""What an engine file says about itself, and the checks made when it is loaded."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import RsirError

FORMAT = "rsir-trt/engine/3"   # 2: the tau input, remaining seed items; 3: head rows over state rows (step.py)
# the step's inputs before its cache buffers (step.py)
STEP_INPUTS = ["item", "pos", "traj", "row", "seed_items", "tau"]
# the inputs whose first dimension counts head rows, not state rows (and so do the head outputs)
HEAD_ROW_INPUTS = ["row", "seed_items", "tau"]
# the step's outputs before its cache rows (step.py); here so runtimes need not import torch
HEAD_OUTPUTS = ["fidelity", "best_seed_item", "best_item"]
SAMPLING_OUTPUTS = ["topk_ids", "topk_scores", "seed_scores"]


def versions() -> dict:
    out = {}
    for mod in ("torch", "onnx", "onnxruntime", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # absent or broken: not part of this engine
            pass
    from . import __version__
    out["rsir_trt"] = __version__
    return out


def vocab_hash(item_tokens: list[str]) -> str:
    return hashlib.sha256("\n".join(item_tokens).encode()).hexdigest()[:16]


@dataclass
class EngineMeta:
    backend: str                 # onnxruntime | tensorrt
    model: dict                  # ModelConfig.to_dict()
    weights_hash: str
    item_tokens: list[str]
    topk: int = 0
    with_logits: bool = False
    precision: str = "fp32"
    batch_profile: list = field(default_factory=list)   # TensorRT: min/opt/max batch
    format: str = FORMAT
    versions: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)   # the real data the model was trained on (data/identity.py)

    @property
    def num_items(self) -> int:
        return self.model["num_items"]

    @property
    def max_len(self) -> int:
        return self.model["max_len"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "EngineMeta":
        if isinstance(d, dict) and str(d.get("format", "")).startswith("rsir-trt/engine/") and d["format"] != FORMAT:
            raise RsirError(f"{where}: engine format {d['format']} is not this rsir-trt's {FORMAT}: "
                            "rebuild it with rsir-trt build-engine")
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise RsirError(f"{where}: not an rsir-trt engine (no '{FORMAT}' metadata)")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as e:
            raise RsirError(f"{where}: engine metadata is incomplete ({e})") from None

    def check(self, where: str, *, item_tokens: list[str] | None = None, max_len: int | None = None,
              weights_hash: str | None = None, topk: int = 0) -> None:
        """Refuse an engine built for other data, a shorter S_max, other weights or no top-k."""
        if item_tokens is not None:
            if len(item_tokens) != self.num_items:
                raise RsirError(f"{where}: engine vocabulary has {self.num_items - 1} items, "
                                f"the data has {len(item_tokens) - 1}")
            if vocab_hash(item_tokens) != vocab_hash(self.item_tokens):
                raise RsirError(f"{where}: engine was built for a different item vocabulary")
        if max_len is not None and max_len > self.max_len:
            raise RsirError(f"{where}: engine S_max is {self.max_len}, request needs {max_len}")
        if weights_hash is not None and weights_hash != self.weights_hash:
            raise RsirError(f"{where}: engine weights {self.weights_hash} differ from checkpoint {weights_hash}")
        if topk > self.topk:
            raise RsirError(f"{where}: sampling with top-k {topk} needs an engine built with --topk >= {topk}"
                            f" (this one has {self.topk})")


def read_onnx_meta(path: Path) -> EngineMeta:
    import onnx
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises several types for garbage input
        raise RsirError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    return onnx_props_meta({p.key: p.value for p in proto.metadata_props}, path)


def onnx_props_meta(props: dict, path: Path) -> EngineMeta:
    """The EngineMeta in an ONNX model's metadata_props (as `onnx` or ONNX Runtime's
    `custom_metadata_map` reads them)."""
    if "rsir_trt" not in props:
        raise RsirError(f"{path}: ONNX file has no rsir-trt metadata (not built by rsir-trt build-engine)")
    return EngineMeta.from_dict(json.loads(props["rsir_trt"]), str(path))


def sidecar(path: Path) -> Path:
    """TensorRT plans are opaque; their metadata lives in <plan>.json beside them."""
    return Path(str(path) + ".json")


def read_plan_meta(path: Path) -> EngineMeta:
    side = sidecar(path)
    if not side.is_file():
        raise RsirError(f"{path}: metadata file {side} is missing")
    try:
        d = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise RsirError(f"{side}:{e.lineno}: not valid JSON") from None
    return EngineMeta.from_dict(d, str(side))
