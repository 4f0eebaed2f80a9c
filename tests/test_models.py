import pytest
import torch

from rsir_trt.models import ModelConfig, create_model


@pytest.mark.parametrize("kind,layout", [("sasrec", "recbole"), ("sasrec", "kang"), ("gru4rec", "recbole")])
def test_cached_stepping_reproduces_full_forward(kind, layout):
    torch.manual_seed(0)
    c = ModelConfig(kind=kind, num_items=300, max_len=20, dropout=0.0, attn_dropout=0.0, layout=layout)
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


@pytest.mark.parametrize("layout", ["recbole", "kang"])
def test_right_padding_does_not_change_real_positions(layout):
    torch.manual_seed(0)
    m = create_model(ModelConfig(num_items=50, max_len=10, dropout=0.0, attn_dropout=0.0, layout=layout)).eval()
    s = torch.tensor([[3, 4, 5, 0, 0, 0]])
    with torch.no_grad():
        assert torch.allclose(m.encode(s)[:, :3], m.encode(s[:, :3]), atol=1e-6)


def test_unknown_model_is_a_clear_error():
    from rsir_trt.errors import RsirError
    with pytest.raises(RsirError, match="unknown model"):
        create_model(ModelConfig(kind="bert4rec", num_items=10))


def test_the_two_sasrec_layouts_differ_as_documented():
    """kang: query and residual from LN(x), keys/values from x; recbole: post-LN."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    c = ModelConfig(num_items=40, max_len=6, dim=8, heads=2, layers=1, dropout=0.0, attn_dropout=0.0, layout="kang")
    m = create_model(c).eval()
    s = torch.tensor([[3, 4, 5]])
    blk = m.blocks[0]
    x = m.item_emb(s) * 8 ** 0.5 + m.pos_emb(torch.arange(3))
    y = blk.ln1(x)
    q, k, v = (F.linear(t, w, b).view(1, 3, 2, 4).transpose(1, 2) for t, w, b in
               ((y, blk.qkv.weight[:8], blk.qkv.bias[:8]), (x, blk.qkv.weight[8:16], blk.qkv.bias[8:16]),
                (x, blk.qkv.weight[16:], blk.qkv.bias[16:])))
    attn = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(1, 3, 8)
    h = blk.ln2(y + blk.proj(attn))
    with torch.no_grad():
        assert torch.allclose(m.encode(s), m.ln(h + blk.ffn(h)), atol=1e-6)
    recbole = create_model(ModelConfig(**{**c.to_dict(), "layout": "recbole"}))
    recbole.load_state_dict(m.state_dict())  # the same weights, another layout
    with torch.no_grad():
        assert not torch.allclose(recbole.eval().encode(s), m.encode(s), atol=1e-3)


def test_layout_errors():
    from rsir_trt.errors import RsirError
    with pytest.raises(RsirError, match="--layout: 'pre' is not one of recbole, kang"):
        create_model(ModelConfig(num_items=10, layout="pre"))
    with pytest.raises(RsirError, match="--layout kang applies to SASRec only"):
        create_model(ModelConfig(kind="gru4rec", num_items=10, layout="kang"))
