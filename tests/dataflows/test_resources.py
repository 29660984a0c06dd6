"""Resources kept for the process (``dataflows/resources.py``): a forked child opens its own."""

from __future__ import annotations

import os

from dataflows import resources


def test_a_forked_child_starts_without_the_parents_store_and_models():
    resources._STORES[("repo", None)] = object()
    resources._MODELS[("fraud_model/1", "registry")] = object()
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only when it inherited nothing
            os._exit(0 if not resources._STORES and not resources._MODELS else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert resources._STORES and resources._MODELS  # the parent keeps its own
    finally:
        resources._STORES.pop(("repo", None), None)
        resources._MODELS.pop(("fraud_model/1", "registry"), None)
