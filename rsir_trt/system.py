"""How many threads to use: the cores this process may run on, or RSIR_THREADS.

Oversubscribed OpenMP threads are catastrophic on 2 cores (measured: each torch op
8 ms instead of 0.1 ms while another process held both cores), so jobs running side
by side should split the cores with RSIR_THREADS."""
import os


def cpu_threads() -> int:
    env = os.environ.get("RSIR_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_torch_threads() -> int:
    import torch
    n = cpu_threads()
    torch.set_num_threads(n)
    return n
