import pytest
import torch

from rsir_trt.models import ModelConfig, create_model


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_cached_stepping_reproduces_full_forward(kind):
    torch.manual_seed(0)
    c = ModelConfig(kind=kind, num_items=300, max_len=20, dropout=0.0, attn_dropout=0.0)
    m = create_model(c).eval()
    B = 7
    seqs = torch.randint(1, 300, (B, c.max_len))
    with torch.no_grad():
        full = m.encode(seqs)                                  # [B, S, D]
        cache = [torch.randn(s) for _, s in m.cache_shapes(B)]  # garbage: must never be read
        for t in range(c.max_len):
            pos = torch.full((B,), t)
            h, rows = m.step(seqs[:, t], pos, cache)
            if m.cache_kind == "kv":
                for buf, row in zip(cache, rows):
                    buf[torch.arange(B), :, pos] = row
            else:
                cache = rows
            assert torch.allclose(h, full[:, t], atol=1e-5), f"position {t}"


def test_right_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    m = create_model(ModelConfig(num_items=50, max_len=10, dropout=0.0, attn_dropout=0.0)).eval()
    s = torch.tensor([[3, 4, 5, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(m.encode(s)[:, :3], m.encode(s[:, :3]), atol=1e-6)


def test_unknown_model_is_a_clear_error():
    from rsir_trt.errors import RsirError
    with pytest.raises(RsirError, match="unknown model"):
        create_model(ModelConfig(kind="bert4rec", num_items=10))
