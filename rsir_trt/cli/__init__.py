"""The `rsir-trt` command. Errors print as one line on stderr and exit 2."""
from __future__ import annotations

import functools
import sys

import typer

from ..errors import RsirError
from ..system import keep_freed_memory
from .common import err_console


def guarded(fn):
    """RsirError -> one red line and exit 2; Ctrl-C -> exit 130. Never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RsirError as e:
            err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("aborted")
            raise typer.Exit(130) from None
    return wrapper


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="RSIR: recursive self-improving sequential recommenders on fast engines.")

from . import bench_cmd, data_cmd, engine_cmd, loop_cmd, train_cmd  # noqa: E402  (commands use `guarded`)

app.command("train")(guarded(train_cmd.train_cmd))
app.command("evaluate")(guarded(train_cmd.evaluate_cmd))
app.command("build-engine")(guarded(engine_cmd.build_engine_cmd))
app.command("generate")(guarded(engine_cmd.generate_cmd))
app.command("loop")(guarded(loop_cmd.loop_cmd))
app.command("compare")(guarded(loop_cmd.compare_cmd))
app.command("bench")(guarded(bench_cmd.bench_cmd))
app.add_typer(data_cmd.app, name="data")


def main(argv: list[str] | None = None) -> int:
    """Console entry point. With argv (tests), returns the exit code instead of exiting."""
    keep_freed_memory()
    try:
        app(args=argv, prog_name="rsir-trt")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if argv is None:
        sys.exit(code)
    return code
