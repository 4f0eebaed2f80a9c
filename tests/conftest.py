import os
from pathlib import Path

import pytest
import torch

from rsir_trt import checkpoint
from rsir_trt.data import identity, open_dataset
from rsir_trt.models import ModelConfig, create_model
from rsir_trt.train import TrainConfig, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("RSIR_DATA_DIR", str(SHARED))


def beauty_available() -> bool:
    return (SHARED / "beauty" / "Beauty.txt").is_file()


needs_beauty = pytest.mark.skipif(not beauty_available(), reason="../shared/data/beauty is absent")


@pytest.fixture(scope="session")
def ml100k():
    return open_dataset(None)


def _trained(tmp_path_factory, data, kind, epochs=2, **model):
    torch.manual_seed(0)
    m = create_model(ModelConfig(kind=kind, num_items=data.num_items, **model))
    train(m, data, TrainConfig(epochs=epochs, patience=5))
    path = tmp_path_factory.mktemp(kind) / "model.pt"
    checkpoint.save(path, m, data.item_tokens, data={"source": None, "format": "auto", "max_len": 50, "kcore": 0,
                                                     **identity(data)})
    return path


@pytest.fixture(scope="session")
def sasrec_ckpt(tmp_path_factory, ml100k):
    return _trained(tmp_path_factory, ml100k, "sasrec")


@pytest.fixture(scope="session")
def kang_ckpt(tmp_path_factory, ml100k):
    """SASRec in the original code's layout (pre-LN, scaled embeddings, final LayerNorm)."""
    return _trained(tmp_path_factory, ml100k, "sasrec", layout="kang")


@pytest.fixture(scope="session")
def gru_ckpt(tmp_path_factory, ml100k):
    return _trained(tmp_path_factory, ml100k, "gru4rec")


@pytest.fixture(scope="session")
def beauty_small():
    """Beauty's full vocabulary (12,101 items), its first 2,000 users."""
    if not beauty_available():
        pytest.skip("../shared/data/beauty is absent")
    from rsir_trt.data.dataset import SequenceData
    full = open_dataset("beauty")
    return SequenceData("beauty-2k", full.users[:2000], full.item_tokens, full.sequences[:2000])


@pytest.fixture(scope="session")
def beauty_ckpts(tmp_path_factory, beauty_small):
    return {k: _trained(tmp_path_factory, beauty_small, k, epochs=1) for k in ("sasrec", "gru4rec")}
