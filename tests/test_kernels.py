"""``tests/kernels.py``: the warm-up ``scripts/test.sh`` runs before the suite leaves no
numba kernel to compile in the tests' own processes."""

from tests import kernels


def test_the_warm_up_compiles_every_kernel():
    kernels.warm()
    assert kernels.uncompiled() == []


def test_every_module_with_a_kernel_is_warmed():
    from tests.conftest import ROOT

    compiled = {".".join(p.relative_to(ROOT).with_suffix("").parts)
                for package in ("features", "models", "dataflows") for p in (ROOT / package).rglob("*.py")
                if "numba.njit" in p.read_text()}
    assert compiled == {m.__name__ for m in kernels.kernel_modules()}
