"""The scale-out driver's CPU accounting (the backfills themselves run in ``make bench``)."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.kafka_bench import ROOT
from benchmarks.scaleout import CpuWatch


def test_cpu_watch_counts_the_flow_processes_of_this_checkout_only(tmp_path):
    busy = "x = 0\nwhile True: x += 1  # scaleout-test-needle"
    here = subprocess.Popen([sys.executable, "-c", busy], cwd=ROOT)
    elsewhere = subprocess.Popen([sys.executable, "-c", busy], cwd=tmp_path)  # another checkout's flow
    try:
        with CpuWatch("scaleout-test-needle", every_s=0.05) as cpu:
            t0 = time.time()
            time.sleep(1.0)
            t1 = time.time()
    finally:
        here.kill()
        elsewhere.kill()
        here.wait()
        elsewhere.wait()
    whole = cpu.summary()
    assert list(whole["flow_cpu_s"]) == [f"process 0 (alone) [{here.pid}]"]
    assert whole["flow_cpu_s"][f"process 0 (alone) [{here.pid}]"] > 0
    steady = cpu.between(t0 + 0.2, t1)
    assert 0 < steady["flow_cores"][f"process 0 (alone) [{here.pid}]"] <= 1.2  # one core at most (CPU ticks are 10 ms)
