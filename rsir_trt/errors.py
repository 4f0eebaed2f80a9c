"""The one exception type users see: a clear one-line message, never a traceback."""


class RsirError(Exception):
    """Bad input or an impossible request; the CLI prints it as one line and exits 2."""


def at(path, line: int | None = None) -> str:
    """Location prefix for messages: 'file:line' or 'file'."""
    return f"{path}:{line}" if line is not None else f"{path}"
