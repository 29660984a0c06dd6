"""Online anomaly detectors, River-shaped, engine-free.

Every detector follows River's anomaly-detector interface: ``score_one(x)``
(does not learn), ``learn_one(x)``, plus ``score_learn(x) -> (score, warming_up)``
for the usual score-then-learn order, a ``warming_up`` flag, and state kept apart
from configuration: ``snapshot()`` returns plain data (or bytes) and
``load(snapshot)`` puts it into a detector built from the *current* configuration.

| detector | one per | what it catches |
|---|---|---|
| :class:`KeyDetector` | key and variable | deviation from the key's own recent level and spread |
| :class:`StuckDetector` | key and variable | a value repeated improbably often |
| :class:`ShardDetector` | shard of keys | multivariate outliers (Half-Space Trees, :mod:`models.detectors.hst`) |
| :class:`DriftMonitor` | key and score stream | a lasting rise of a score (River PageHinkley) |

Scores are in ``[0, 1]``, higher = more anomalous; :func:`z_to_score` maps a
deviation in standard deviations onto that scale. Combining scores and the
warm-up rule live in :mod:`models.status`.
"""

from models.detectors.drift import DriftMonitor
from models.detectors.key import KeyDetector, z_to_score
from models.detectors.shard import ShardDetector
from models.detectors.stuck import StuckDetector

__all__ = ["KeyDetector", "ShardDetector", "StuckDetector", "DriftMonitor", "z_to_score"]
