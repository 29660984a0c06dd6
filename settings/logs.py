"""Structured logs: one JSON object per line on stderr, via structlog.

Both structlog's loggers and the standard library's (Feast, Bytewax's Python
side and other libraries log through :mod:`logging`) go to one root handler
that renders every record as a JSON line on stderr; nothing is written to
stdout. Each line has ``event``, ``level``, ``logger`` and ``timestamp``.

>>> configure_logging("loud")
Traceback (most recent call last):
...
settings.config.ConfigError: STREAMSCORE_LOG__LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog

from settings.config import ConfigError, parse_log_level, setting

__all__ = ["configure_logging"]

_lock = threading.Lock()
#: Libraries whose INFO lines are noise in a scoring run's log.
_QUIET_LIBRARIES = ("feast", "urllib3", "asyncio", "filelock", "fsspec", "httpx", "httpx2", "httpcore")  # httpx*: schema registry requests

_handler: logging.Handler | None = None  # ours, on the root logger once configured
_level: str | None = None
#: structlog caches each logger's processors on its first use (cheaper log calls). The test
#: suite turns it off (tests/conftest.py): structlog.testing.capture_logs() cannot reach a
#: logger cached by an earlier test of the same process.
CACHE_LOGGERS = True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (so a
    replaced ``sys.stderr``, e.g. pytest's capture, is honoured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _shared_processors() -> list[Any]:
    """What every line gets, whether logged through structlog or :mod:`logging`."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _env_level() -> str:
    """``log.level`` from the environment or the settings file; INFO when it is not a level."""
    try:
        return parse_log_level(str(setting("log.level")))
    except ConfigError:
        return "INFO"


def configure_logging(level: str | None = None) -> None:
    """Send every log line, as JSON, to stderr, at ``level`` and above.

    ``level`` is DEBUG, INFO, WARNING, ERROR or CRITICAL (any case); a bad one
    raises :class:`~settings.config.ConfigError` naming ``STREAMSCORE_LOG__LEVEL``.
    None means: keep the level already configured, or else the ``log.level``
    setting (``STREAMSCORE_LOG__LEVEL`` or the settings file) -- INFO when it is
    unset or not a level: logging is set up before the configuration is read, and
    ``from_env`` reports a bad ``log.level`` along with every other bad setting. Calling it again is harmless; another
    level reconfigures (loggers created earlier follow the new level).
    """
    global _handler, _level
    with _lock:
        if level is None:
            name = _level or _env_level()
        else:
            name = parse_log_level(level)
        root = logging.getLogger()
        if _handler is not None and name == _level and _handler in root.handlers:
            return
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,  # the root logger's level, so a reconfiguration applies at once
                *_shared_processors(),
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.StackInfoRenderer(),
                structlog.processors.format_exc_info,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=CACHE_LOGGERS,
        )
        handler = _StderrHandler()
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_shared_processors(),  # records of libraries using logging
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        if _handler is not None:
            root.removeHandler(_handler)
        root.addHandler(handler)
        root.setLevel(name)
        # chatty libraries (Feast logs every registry refresh at INFO) speak from WARNING up, unless DEBUG
        for lib in _QUIET_LIBRARIES:
            logging.getLogger(lib).setLevel(name if name == "DEBUG" else max(logging.getLevelName(name), logging.WARNING))
        _handler, _level = handler, name
