"""The variables other tools define, read here so that nothing outside :mod:`settings`
reads the environment: Bytewax's own ``BYTEWAX_*`` (where a run's workers are, its
recovery directory) and the variables a Feast store YAML names (``${VAR}``, e.g.
``REDIS_CONNECTION_STRING``).

>>> bytewax_variables({"BYTEWAX_WORKERS_PER_PROCESS": "2", "BYTEWAX_ADDRESSES": "", "OTHER": "x"})
{'BYTEWAX_WORKERS_PER_PROCESS': '2'}
>>> variable("REDIS_CONNECTION_STRING", {"REDIS_CONNECTION_STRING": "localhost:6379"})
'localhost:6379'
"""

from __future__ import annotations

import os
from typing import Mapping

__all__ = ["BYTEWAX_VARIABLES", "bytewax_variables", "variable", "dataflow_api", "disable_dataflow_api"]

#: what ``bytewax.run`` reads from the environment (its options' fallbacks) and
#: :mod:`dataflows.placement` needs: workers, processes, the hostfile, recovery
BYTEWAX_VARIABLES = (
    "BYTEWAX_WORKERS_PER_PROCESS",
    "BYTEWAX_ADDRESSES",
    "BYTEWAX_HOSTFILE_PATH",
    "BYTEWAX_PROCESS_ID",
    "BYTEWAX_POD_NAME",
    "BYTEWAX_STATEFULSET_NAME",
    "BYTEWAX_RECOVERY_DIRECTORY",
)


def bytewax_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-empty Bytewax variables of ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in BYTEWAX_VARIABLES if env.get(name)}


#: values of ``BYTEWAX_DATAFLOW_API_ENABLED`` that mean off (Bytewax 0.21.1 serves its API
#: when the variable is set at all, even to ``0``)
_OFF = ("", "0", "false", "no", "off")


def dataflow_api(environ: Mapping[str, str] | None = None) -> tuple[bool | None, str]:
    """Bytewax's dataflow API (``/metrics``, ``/dataflow``): ``(True, port)`` when
    ``BYTEWAX_DATAFLOW_API_ENABLED`` is on, ``(False, port)`` when it is set to an off
    value (``0``, ``false``, ``no``, ``off``, empty), ``(None, port)`` when unset;
    ``port`` is ``BYTEWAX_DATAFLOW_API_PORT`` as given (default ``"3030"``).

    >>> dataflow_api({"BYTEWAX_DATAFLOW_API_ENABLED": "0"}), dataflow_api({"BYTEWAX_DATAFLOW_API_ENABLED": "true",
    ...     "BYTEWAX_DATAFLOW_API_PORT": "3031"}), dataflow_api({})
    ((False, '3030'), (True, '3031'), (None, '3030'))
    """
    env = os.environ if environ is None else environ
    value = env.get("BYTEWAX_DATAFLOW_API_ENABLED")
    port = env.get("BYTEWAX_DATAFLOW_API_PORT") or "3030"
    return (None if value is None else value.strip().lower() not in _OFF), port


def disable_dataflow_api() -> None:
    """Unset ``BYTEWAX_DATAFLOW_API_ENABLED`` in this process, before ``bytewax.run``
    starts the dataflow (Bytewax reads it then): no API server is started."""
    os.environ.pop("BYTEWAX_DATAFLOW_API_ENABLED", None)


def variable(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Another tool's variable (a Feast store YAML's ``${VAR}``), None when unset or empty."""
    env = os.environ if environ is None else environ
    return env.get(name) or None


def variables() -> Mapping[str, str]:
    """The process's environment, for another tool's own variables (a Feast store YAML's
    ``${VAR}``: :func:`features.store.open_store` checks them); the one place that hands
    ``os.environ`` out."""
    return os.environ
