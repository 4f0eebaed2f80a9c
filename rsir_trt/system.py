"""How many threads to use: the cores this process may run on, or RSIR_THREADS.

Also what identifies the machine behind a result (machine()).

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


# Environment variables that pin which kernels (and so which float roundings) run.
KERNEL_PINS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def cpu_model() -> str:
    """/proc/cpuinfo's model name with its family and model numbers (VMs often report only
    a brand, e.g. "AMD EPYC"); the platform's processor string elsewhere."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break   # the first processor is enough
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in info:
        import platform
        return platform.processor() or platform.machine()
    return f"{info['model name']} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"


def machine(torch: bool = True) -> dict:
    """What decides the float results besides the code and seed: the CPU and the kernel
    path torch dispatches to on it (AVX2 or AVX512: training on an AVX512 host gives
    other bits than on an AVX2 one), thread count and library versions. `torch=False`
    where torch computes nothing (an ONNX Runtime generation), which then need not load it."""
    d = {"cpu": cpu_model(), "threads": cpu_threads()}
    if torch:
        import torch as t
        d.update(torch_isa=t.backends.cpu.get_cpu_capability(), torch=t.__version__)
    try:
        import onnxruntime
        d["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    pins = {k: os.environ[k] for k in KERNEL_PINS if k in os.environ}
    if pins:
        d["pins"] = pins
    return d


def machine_change(before: dict, now: dict) -> str:
    """'' if the results would be computed the same way, else what differs (for a warning)."""
    keys = sorted(set(before) | set(now))
    return ", ".join(f"{k} {before.get(k)} -> {now.get(k)}" for k in keys if before.get(k) != now.get(k))
