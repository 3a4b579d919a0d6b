"""Server log lines fit for a notebook: one line per problem, never a traceback.

The lab runs inside the kernel, so anything its loggers print lands in the student's cell output.
aiohttp logs every malformed request (it answers it with a plain 400 before any labkit code runs)
with a full traceback. When nobody has configured logging, labkit gives its server loggers a handler
that prints a single line instead. A user who configures logging keeps full control.
"""

from __future__ import annotations

import logging

SERVER_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "labkit.server")


class OneLineFormatter(logging.Formatter):
    """`lab server: <message> (<exception type>: <first line of the exception>)`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"lab server: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            line += f" ({type(exc).__name__}{': ' + first if first else ''})"
        return line


def one_line_server_logs() -> None:
    """Attach the one-line handler to the server loggers, unless logging is already configured."""
    if logging.getLogger().handlers:
        return
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(OneLineFormatter())
        logger.addHandler(handler)
        logger.propagate = False
