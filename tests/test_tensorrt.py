"""TensorRT logic that runs without TensorRT; the real build/run is verified on a GPU
host with `python benchmarks/verify_tensorrt.py` (README)."""
import json

import pytest

from rsir_trt.build import build_engine, resolve_backend
from rsir_trt.engine_meta import FORMAT
from rsir_trt.errors import RsirError
from rsir_trt.runtime.tensorrt_rt import apply_precision, check_batch, onnx_input_shapes, precision_plan, profile_shapes


def test_precision_plan_per_major_version():
    assert precision_plan(10, "fp16") == {"export_dtype": "fp32", "fp16_flag": True, "strongly_typed": False}
    assert precision_plan(10, "fp32")["fp16_flag"] is False
    # TensorRT 11 removed the FP16 flag: fp16 must come from the ONNX itself
    assert precision_plan(11, "fp16") == {"export_dtype": "fp16", "fp16_flag": False, "strongly_typed": True}
    with pytest.raises(RsirError, match="too old"):
        precision_plan(8, "fp32")
    with pytest.raises(RsirError, match="--precision"):
        precision_plan(10, "int8")


def test_builder_flags_clear_tf32_and_set_fp16_only_on_10x():
    """TensorRT is absent here: a stand-in records the flags the builder config receives
    (names as in TensorRT 10/11's Python API, where TF32 is on by default)."""
    from types import SimpleNamespace

    class Config:
        def __init__(self):
            self.flags = {"TF32"}
        def set_flag(self, f):
            self.flags.add(f)
        def clear_flag(self, f):
            self.flags.discard(f)

    trt = SimpleNamespace(BuilderFlag=SimpleNamespace(TF32="TF32", FP16="FP16"))
    for major, precision, want in [(10, "fp32", set()), (10, "fp16", {"FP16"}), (11, "fp32", set()), (11, "fp16", set())]:
        config = Config()
        apply_precision(config, trt, precision_plan(major, precision))
        assert config.flags == want, (major, precision)


def test_profile_shapes_from_the_exported_graph(sasrec_ckpt, tmp_path):
    build_engine(sasrec_ckpt, tmp_path / "e", "onnxruntime")
    shapes = onnx_input_shapes(tmp_path / "e.onnx")
    assert shapes["item"] == (-1,) and shapes["traj"] == (-1, 50)
    assert shapes["past_key_values.0.key"] == (-1, 2, 50, 32)
    prof = profile_shapes(shapes, 1, 256, 4096)
    assert prof["past_key_values.1.value"] == ((1, 2, 50, 32), (256, 2, 50, 32), (4096, 2, 50, 32))
    assert prof["pos"] == ((1,), (256,), (4096,))
    with pytest.raises(RsirError, match="1 <= min <= opt <= max"):
        profile_shapes(shapes, 8, 4, 16)


def test_a_plan_refuses_more_rows_than_its_profile():
    from rsir_trt.engine_meta import EngineMeta
    meta = EngineMeta(backend="tensorrt", model={"num_items": 10, "max_len": 5}, weights_hash="x",
                      item_tokens=[], batch_profile=[1, 256, 1024])
    check_batch(meta, 1024, "e.plan")   # the profile's maximum runs
    with pytest.raises(RsirError, match=r"^e.plan: built for at most 1024 rows a step \(build-engine --max-batch\), asked for 1025"):
        check_batch(meta, 1025, "e.plan")


def test_without_tensorrt_the_error_is_one_clear_line(sasrec_ckpt, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert resolve_backend("auto") == "onnxruntime"
    with pytest.raises(RsirError, match="TensorRT is not installed"):
        build_engine(sasrec_ckpt, tmp_path / "e", "tensorrt")
    from rsir_trt.runtime import open_runtime
    plan = tmp_path / "x.plan"
    plan.write_bytes(b"\0" * 16)
    with pytest.raises(RsirError, match="metadata file .* is missing"):
        open_runtime(plan)
    (tmp_path / "x.plan.json").write_text(json.dumps({"format": FORMAT, "backend": "tensorrt",
                                                       "model": {}, "weights_hash": "x", "item_tokens": []}))
    with pytest.raises(RsirError, match="TensorRT is not installed"):
        open_runtime(plan)


def test_real_tensorrt_build_and_parity(sasrec_ckpt, tmp_path):
    pytest.importorskip("tensorrt", exc_type=ImportError)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "benchmarks/verify_tensorrt.py", "--ckpt", str(sasrec_ckpt),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("kind,topk", [("sasrec", 0), ("sasrec", 5), ("gru4rec", 0)])
def test_engine_contract_names_from_metadata_match_the_export(kind, topk, sasrec_ckpt, gru_ckpt, tmp_path):
    # TensorRT binds by these names (not its own tensor order), so they must be exactly
    # the exported graph's inputs and outputs, in order
    import onnx
    from rsir_trt.engine_meta import read_onnx_meta
    from rsir_trt.step import io_names
    build_engine(sasrec_ckpt if kind == "sasrec" else gru_ckpt, tmp_path / "e", "onnxruntime", topk=topk)
    graph = onnx.load(str(tmp_path / "e.onnx")).graph
    meta = read_onnx_meta(tmp_path / "e.onnx")
    assert io_names(meta.model, meta.topk, meta.with_logits) == (
        [i.name for i in graph.input], [o.name for o in graph.output])
