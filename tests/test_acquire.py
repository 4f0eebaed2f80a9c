"""Post-verification acquisition: the per-seed cap, the choice by MC-dropout
disagreement, its determinism, and bad options."""
import numpy as np
import pytest
import torch

from rsir_trt.acquire import AcquireConfig, acquire, disagreement
from rsir_trt.data import Synthetic
from rsir_trt.errors import RsirError
from rsir_trt.models import ModelConfig, create_model


def synthetic(seed_user):
    seqs = [np.array([1 + i, 2 + i, 3 + i]) for i in range(len(seed_user))]
    return Synthetic(seqs, list(seed_user), [1] * len(seed_user))


def model(dropout):
    c = ModelConfig(kind="sasrec", num_items=30, max_len=8, dim=16, layers=1, heads=2, dropout=dropout,
                    attn_dropout=dropout)
    return create_model(c, seed=0)


def test_first_keeps_each_seeds_first_sequences_in_generation_order():
    syn = synthetic([4, 4, 7, 4, 7, 9, 4])
    kept, summary = acquire(syn, AcquireConfig(cap=2, by="first"))
    assert kept.seed_user == [4, 4, 7, 7, 9]
    assert [s[0] for s in kept.sequences] == [1, 2, 3, 5, 6]     # rows 0, 1, 2, 4, 5
    assert {k: v for k, v in summary.items() if k != "seconds"} == {"candidates": 7, "kept": 5, "cap_per_seed": 2,
                                                                      "by": "first"}


def test_no_cap_keeps_everything():
    syn = synthetic([1, 1, 1])
    kept, summary = acquire(syn, AcquireConfig(cap=0))
    assert kept is syn and summary == {}


def test_disagreement_keeps_each_seeds_most_uncertain_sequences():
    m = model(0.5)
    syn = synthetic([0, 0, 0, 1, 1, 2])
    score = disagreement(m, syn.sequences, passes=6, seed=5)
    assert (score > 0).all()
    kept, summary = acquire(syn, AcquireConfig(cap=1, passes=6), m, seed=5)
    best = [int(np.argmax(np.where(np.array(syn.seed_user) == u, score, -1))) for u in (0, 1, 2)]
    assert [s.tolist() for s in kept.sequences] == [syn.sequences[i].tolist() for i in sorted(best)]
    assert summary["kept"] == 3 and summary["disagreement_kept_mean"] >= summary["disagreement_all_mean"]


def test_disagreement_is_reproducible_and_leaves_the_callers_rng_alone():
    m = model(0.5).eval()
    seqs = synthetic(range(5)).sequences
    torch.manual_seed(11)
    a = disagreement(m, seqs, passes=4, seed=1)
    after = torch.rand(1)
    torch.manual_seed(11)
    b = disagreement(m, seqs, passes=4, seed=1)
    assert np.array_equal(a, b) and torch.equal(torch.rand(1), after)
    assert not np.array_equal(a, disagreement(m, seqs, passes=4, seed=2))
    assert not m.training                    # back in the mode it came in


def test_without_dropout_the_passes_agree():
    assert np.allclose(disagreement(model(0.0), synthetic(range(3)).sequences, passes=3, seed=0), 0.0)


@pytest.mark.parametrize("cfg, msg", [(AcquireConfig(cap=-1), "--cap-per-seed"),
                                      (AcquireConfig(cap=1, by="random"), "--acquire"),
                                      (AcquireConfig(cap=1, passes=1), "--acquire-passes")])
def test_bad_options_are_refused(cfg, msg):
    with pytest.raises(RsirError, match=msg):
        cfg.check()
