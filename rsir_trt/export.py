"""Export a model's decode step (with the RSIR head) to ONNX, metadata inside the file."""
from __future__ import annotations

import json
import warnings
import time
from pathlib import Path

import onnx
import torch

from .atomic import atomic_path
from .engine_meta import HEAD_ROW_INPUTS, HEAD_OUTPUTS, SAMPLING_OUTPUTS, STEP_INPUTS, EngineMeta, versions
from .step import DecodeStep

OPSET = 18


def example_inputs(model, batch: int = 2):
    """Example inputs; batch >= 2 so the exporter keeps that dimension dynamic."""
    S = model.config.max_len
    item = torch.arange(1, batch + 1, dtype=torch.int64)
    pos = torch.ones(batch, dtype=torch.int64)
    seeds = torch.zeros(batch, S, dtype=torch.int64)
    seeds[:, :3] = torch.tensor([1, 2, 3])
    traj = torch.zeros(batch, S, dtype=torch.int64)
    traj[:, 0] = item
    tau = torch.full((batch,), 10, dtype=torch.int64)
    row = torch.arange(batch, dtype=torch.int64)
    cache = [torch.randn(shape) * 0.1 for _, shape in model.cache_shapes(batch)]
    return (item, pos, traj, row, seeds, tau, *cache)


def export_onnx(model, path: str | Path, meta: EngineMeta, dynamo: bool = False) -> float:
    """Write the decode-step graph to `path` atomically; returns export seconds.

    dynamo=False uses the TorchScript exporter: 20-40x faster to export here and the
    graph is the same; dynamo=True uses torch.export (needs onnxscript)."""
    step = DecodeStep(model, topk=meta.topk, with_logits=meta.with_logits).eval()
    args = example_inputs(model)
    names_in, names_out = step.input_names(), step.output_names()
    start = time.perf_counter()
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constants we mean
        if dynamo:
            batch, heads = torch.export.Dim("batch", min=1, max=65536), torch.export.Dim("heads", min=1, max=65536)
            dims = [{0: heads if n in HEAD_ROW_INPUTS else batch} for n in STEP_INPUTS]
            torch.onnx.export(step, args, str(tmp), input_names=names_in, output_names=names_out,
                              dynamic_shapes=(*dims, tuple({0: batch} for _ in args[len(STEP_INPUTS):])), opset_version=OPSET,
                              dynamo=True, external_data=False)
        else:
            per_head = set(HEAD_ROW_INPUTS + HEAD_OUTPUTS + SAMPLING_OUTPUTS)   # state rows: "batch"; head rows: "heads"
            axes = {n: {0: "heads" if n in per_head else "batch"} for n in names_in + names_out}
            torch.onnx.export(step, args, str(tmp), input_names=names_in, output_names=names_out,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        proto = onnx.load(str(tmp))
        meta.versions = versions()
        del proto.metadata_props[:]
        proto.metadata_props.add(key="rsir_trt", value=json.dumps(meta.to_dict()))
        onnx.save(proto, str(tmp))
    return time.perf_counter() - start
