from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ModelConfig:
    kind: str = "sasrec"        # sasrec | gru4rec
    num_items: int = 0          # vocabulary size including padding id 0
    max_len: int = 50           # S_max: longest sequence the model (and its cache) takes
    dim: int = 64
    layers: int = 2
    heads: int = 2
    ffn_mult: int = 4
    dropout: float = 0.5        # embedding/hidden dropout
    attn_dropout: float = 0.5
    layout: str = "recbole"     # SASRec: recbole (post-LN) | kang (the original code's pre-LN layout)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
