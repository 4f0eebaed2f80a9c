"""How many threads to use: the cores this process may run on, or RSIR_THREADS.

Oversubscribed OpenMP threads are catastrophic on 2 cores (measured: each torch op
8 ms instead of 0.1 ms while another process held both cores), so jobs running side
by side should split the cores with RSIR_THREADS."""
import ctypes
import os
import sys


def cpu_threads() -> int:
    env = os.environ.get("RSIR_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def keep_freed_memory() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS.

    glibc serves every allocation above its mmap threshold (at most 32 MB; a B x V score
    or logits matrix is larger) with a fresh mmap and unmaps it on free, so each batch
    page-faults its buffers in again: measured on Sports (V = 18,358, benchmarks/
    train_speed.py) that made validation ranking 2.2x and the full-softmax step 1.8x
    slower. jemalloc/tcmalloc via LD_PRELOAD do the same job; this is the
    in-process equivalent (glibc only; elsewhere a no-op). Returns whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def configure_cpu() -> int:
    """Threads (see cpu_threads) and the allocator policy for B x V work; returns threads."""
    import torch
    n = cpu_threads()
    torch.set_num_threads(n)
    keep_freed_memory()
    return n
