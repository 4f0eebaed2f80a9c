from .catalog import BENCHMARKS, DEFAULT, resolve
from .dataset import (SequenceData, Synthetic, add_synthetic_file, build, load, write_sequences, write_synthetic,
                      write_training_file)
from .identity import check_trained_on, identity


def open_dataset(name_or_path=None, fmt="auto", max_len=50, k_core=0, item_tokens=None) -> SequenceData:
    """Resolve a catalog name (None = the embedded default) or a path, and load it."""
    path, default_fmt = resolve(name_or_path)
    data = load(path, default_fmt if fmt == "auto" else fmt, max_len=max_len, k_core=k_core,
                item_tokens=item_tokens)
    name = name_or_path or DEFAULT
    data.name = name if name == DEFAULT or name in BENCHMARKS else path.stem
    return data


__all__ = ["SequenceData", "Synthetic", "add_synthetic_file", "build", "check_trained_on", "identity", "load",
           "open_dataset", "resolve",
           "write_sequences", "write_synthetic", "write_training_file"]
