"""Compile every numba kernel of the project once, into numba's cache, before the suite starts.

The kernels (:mod:`features.window_kernel`, :mod:`features.transaction_kernel`,
:mod:`models.detectors.kernel`, :mod:`models.fraud.kernel`, :mod:`models.fraud.trees`...) are compiled
with ``cache=True``: the machine code is kept in ``__pycache__`` next to each module and
loaded from there by every later process (~0.5 s instead of ~10 s of CPU). A fresh clone
has no cache, so without this the first flow processes of every test worker compile the
same kernels at the same time. ``scripts/test.sh`` runs ``python -m tests.kernels`` once
before pytest; ``tests/test_kernels.py`` checks that it leaves no kernel uncompiled.
"""

from __future__ import annotations

from types import ModuleType


def kernel_modules() -> list[ModuleType]:
    from features import json_kernel, keyhash, transaction_kernel, window_kernel
    from models.detectors import kernel
    from models.fraud import kernel as fraud_kernel
    from models.fraud import trees

    return [keyhash, window_kernel, transaction_kernel, json_kernel, kernel, fraud_kernel, trees]


def warm() -> None:
    """Run each kernel once with the argument types the flows use (both flows' own
    warm-ups, then a window read and a snapshot loaded back: the paths they leave out)."""
    import numpy as np

    from features.transaction_kernel import haversine_km
    from features.transactions import CustomerFeatures
    from features.windows import TiledWindows
    from models.fraud import warm_up as warm_fraud
    from models.iot import warm_up as warm_iot

    from features.keyhash import key_hash

    warm_fraud()
    warm_iot()
    key_hash("warm-up")
    w = TiledWindows([3600.0, 86400.0], ("amount",))
    w.insert_many(np.array([1.0, 2.0]), np.array([[1.0], [2.0]]))
    w.aggregates(2.0)
    CustomerFeatures().update(1.0, 2.0, 3.0, 4.0)  # the fraud flow's warm-up runs CustomerState's kernel
    haversine_km(1.0, 2.0, 3.0, 4.0, 2.0)
    TiledWindows([3600.0, 86400.0], ("amount",)).load(w.snapshot())


def uncompiled() -> list[str]:
    """The kernels (those not inlined into another) neither compiled in this process nor in
    numba's cache (a kernel called only by another is compiled and cached with its caller)."""
    from pathlib import Path

    from numba.core.registry import CPUDispatcher

    out = []
    for module in kernel_modules():
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.targetoptions.get("inline", "never") != "always":
                if not obj.signatures and not Path(obj._cache._cache_file._index_path).exists():
                    out.append(f"{module.__name__}.{name}")
    return out


if __name__ == "__main__":
    warm()
    missing = uncompiled()
    if missing:
        raise SystemExit(f"tests.kernels: not compiled by warm(): {', '.join(missing)}")
