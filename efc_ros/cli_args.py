"""What the command lines share (``efc``, ``efc bag``, the demo, benchmarks, recipes): argument parsers
and the console form of library log messages.

A leaf module: it imports nothing from the project, so every CLI can use it without importing
``efc_ros.cli`` (which imports the subcommands back, an import cycle).
"""

from __future__ import annotations

import logging
import sys

#: Loggers of the library code whose messages a command line shows (library code never prints).
LIBRARY_LOGGERS = ("efc_core", "efc_ros")


def parse_size_wh(text: str) -> tuple[int, int]:
    """Parse ``"640x480"`` (WIDTHxHEIGHT) into ``(480, 640)``, i.e. (H, W) in pixels.

    Raises:
        ValueError: naming ``text`` when it is not two positive integers joined by ``x``.
    """
    parts = text.lower().strip().split("x")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 640x480)") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return height, width


class _ConsoleFormatter(logging.Formatter):
    """``efc: message`` for information, ``efc: warning: message`` from warnings up."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:  # noqa: A003  (overrides logging.Formatter.format)
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"{self.program}: {level}{record.getMessage()}"


class _StderrHandler(logging.Handler):
    """Writes each record to ``sys.stderr`` as it is when the record is emitted.

    A ``StreamHandler(sys.stderr)`` keeps the stream of the moment it was made: after an
    in-process ``main`` (tests, notebooks) swapped and closed ``sys.stderr``, later records went to
    the closed stream ("--- Logging error --- ValueError: I/O operation on closed file").
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def configure_cli_logging(program: str, level: int = logging.INFO) -> None:
    """Show the library's log records on stderr as ``PROGRAM: [level: ]message`` lines.

    Idempotent: a second call (tests call ``main`` many times) replaces the handler, which writes to
    the ``sys.stderr`` of the moment each record is emitted.
    """
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h.formatter, _ConsoleFormatter)]:
            logger.removeHandler(handler)
        handler = _StderrHandler()
        handler.setFormatter(_ConsoleFormatter(program))
        logger.addHandler(handler)
        logger.setLevel(level)
