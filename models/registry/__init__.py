"""A local, file-based model registry with versions, aliases, traffic routes and integrity checks.

Layout (``root`` defaults to ``model_registry/``)::

    <root>/<name>/<version>/model.txt       the artifact (LightGBM text: no code runs on load)
    <root>/<name>/<version>/manifest.json   version, feature names and order, metrics,
                                            training window, sha256 of the artifact
    <root>/<name>/aliases.json              {"production": 3, ...}
    <root>/<name>/routes.json               traffic routes (:class:`Routes`), when set
    <root>/<name>/deleted.json              versions deleted so far (their numbers are never reused)

References: ``name@alias`` (e.g. ``fraud_model@production``), ``name/version``
(e.g. ``fraud_model/3``), a bare ``name`` (its ``production`` alias), and the
MLflow forms ``models:/name/version`` and ``models:/name@alias``.

Every file is written atomically (a temporary file renamed over the old one), so a
reader (a running flow) sees the old or the new content, never half of it. Changes
to a model's aliases, routes and versions are serialised by a lock file
(``<root>/<name>/.lock``), so two commands cannot lose each other's change.

>>> import tempfile
>>> reg = Registry(tempfile.mkdtemp())
>>> v = reg.publish("m", b"artifact", {"feature_names": ["a"]}, alias="production")
>>> art, manifest = reg.load("m@production")
>>> art, manifest["version"], manifest["sha256"][:12]
(b'artifact', 1, 'c7c5c1d70c5d')
>>> v2 = reg.publish("m", b"candidate", {"feature_names": ["a"]})
>>> reg.set_routes("m", Routes.parse("m/1:90,m/2:10"))
>>> reg.routes("m").route("customer-42") in (0, 1)
True
"""


from __future__ import annotations

from models.registry.compare import METRIC_ORDER, compare_metrics, render_comparison
from models.registry.refs import IntegrityError, RegistryError, RoutesError, canonical_ref, format_ref, parse_ref
from models.registry.routes import BUCKETS, Routes, bucket
from models.registry.store import ALIASES, ARTIFACT, DELETED, MANIFEST, ROUTES, Registry

__all__ = [
    "ARTIFACT",
    "MANIFEST",
    "ALIASES",
    "ROUTES",
    "DELETED",
    "METRIC_ORDER",
    "Registry",
    "RegistryError",
    "IntegrityError",
    "RoutesError",
    "Routes",
    "parse_ref",
    "format_ref",
    "canonical_ref",
    "bucket",
    "compare_metrics",
    "render_comparison",
    "BUCKETS",
]
