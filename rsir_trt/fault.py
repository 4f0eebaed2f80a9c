"""Fault injection for the kill-and-resume tests: RSIR_KILL_AT=<point> makes the process
SIGKILL itself when it reaches that point (no cleanup, exactly like a killed job)."""
import os
import signal


def point(name: str) -> None:
    if os.environ.get("RSIR_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
