"""``scripts/kafka.sh up`` with the port already taken: it says whose it is, not "nothing to do"."""

from __future__ import annotations

import os
import socket
import subprocess

from tests.conftest import ROOT


def test_up_names_a_listener_that_is_not_this_clones_broker(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        res = subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), "up"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert f"127.0.0.1:{port} is taken by pid {os.getpid()} (" in res.stdout, res.stdout
    assert "not by this clone's broker" in res.stdout and "KAFKA_PORT=" in res.stdout
    assert "nothing to do" not in res.stdout
