"""Sequential recommenders behind one small interface:

- `encode(seqs [B, T]) -> hidden [B, T, D]` (right-padded, causal)
- `item_weight` [V, D]: scores are `hidden @ item_weight.T` (tied embeddings)
- `cache_shapes(B)`, `step(item, pos, cache) -> (hidden [B, D], new rows/states)`,
  `cache_kind` ("kv": write the row at `pos`; "state": replace)."""
from ..errors import RsirError
from .config import ModelConfig
from .gru4rec import GRU4Rec
from .sasrec import LAYOUTS, SASRec

MODELS = {"sasrec": SASRec, "gru4rec": GRU4Rec}


def check_config(config: ModelConfig, kind_option: str = "--model") -> None:
    """Bad options fail here, before any work (the loop checks before making its run directory)."""
    if config.kind not in MODELS:
        raise RsirError(f"{kind_option}: unknown model {config.kind!r} (choose from {', '.join(MODELS)})")
    for name in ("dim", "layers", "heads", "ffn_mult"):
        if getattr(config, name) < 1:
            raise RsirError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if not (0 <= config.dropout < 1 and 0 <= config.attn_dropout < 1):  # both come from --dropout
        raise RsirError(f"--dropout must be in [0, 1), got {config.dropout}")
    if config.layout not in LAYOUTS:
        raise RsirError(f"--layout: {config.layout!r} is not one of {', '.join(LAYOUTS)}")
    if config.kind != "sasrec" and config.layout != LAYOUTS[0]:
        raise RsirError(f"--layout {config.layout} applies to SASRec only, not {config.kind}")
    if config.kind == "sasrec" and config.dim % config.heads:
        raise RsirError(f"--dim {config.dim} is not divisible by --heads {config.heads}")


def create_model(config: ModelConfig, seed: int | None = None):
    """A freshly initialised model; with `seed`, the initialisation is reproducible."""
    check_config(config)
    if seed is not None:
        import torch
        torch.manual_seed(seed)
    return MODELS[config.kind](config)


__all__ = ["LAYOUTS", "MODELS", "ModelConfig", "check_config", "create_model", "GRU4Rec", "SASRec"]
