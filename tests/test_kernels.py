"""``tests/kernels.py``: the warm-up ``scripts/test.sh`` runs before the suite leaves no
numba kernel to compile in the tests' own processes."""

from tests import kernels


def test_the_warm_up_compiles_every_kernel():
    kernels.warm()
    assert kernels.uncompiled() == []
    assert {m.__name__ for m in kernels.kernel_modules()} == {"features.window_kernel", "models.detectors.kernel"}
