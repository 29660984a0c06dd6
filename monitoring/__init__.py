"""Monitoring of what was scored: the inference log read with SQL (:mod:`monitoring.queries`),
drift between periods (:mod:`monitoring.drift`), text tables (:mod:`monitoring.tables`), the
HTML report (:mod:`monitoring.html_report`), the run report (:mod:`monitoring.run_report`) and
landing a Kafka-borne log as Parquet (:mod:`monitoring.landing`).

The names of the first three are importable from here (``import monitoring as mon``).
"""

from monitoring.drift import *  # noqa: F403
from monitoring.drift import __all__ as _drift
from monitoring.queries import *  # noqa: F403
from monitoring.queries import __all__ as _queries
from monitoring.tables import *  # noqa: F403
from monitoring.tables import __all__ as _tables

__all__ = [*_queries, *_drift, *_tables]
