"""Where Bytewax runs a key, so shared work spreads over every worker and items cross
processes only where they must.

Bytewax 0.21.1 sends each key of a stateful step to worker
``SipHash-1-3(key) % worker_count`` (Rust's ``DefaultHasher`` with zero keys over the
key string, ``src/operators.rs`` ``stateful_batch`` -> ``src/timely.rs`` ``partition``;
the hash is :func:`features.keyhash.key_hash`). An item that moves to a worker of
another process is pickled and unpickled (a validated transaction: 24-32 µs on the
shared 2-core machine, `python -m benchmarks.scaleout --payload`).

**Shards.** A handful of shard keys such as ``"0"`` .. ``"3"`` can all land on one
worker (with two workers they do: every one goes to worker 1), so one worker would run
every shared detector and the scorer while the other idles. :func:`shard_keys` picks,
for shard ``s``, a key whose hash is ``s`` modulo :data:`MODULUS` (2520, the least
common multiple of 1..10), so with any worker count that divides 2520 (1-10, 12, 14,
15, 18, 20, 21, 24, 28, 30, ...) shard ``s`` runs on worker ``s % workers``.

**Co-location.** A key's shard is ``key_hash(key) % shards``
(:func:`features.records.shard_of`), and :func:`enough_shards` makes the shard count a
multiple of the worker count, so ``shard % workers == key_hash(key) % workers``: the
shard step of a customer (or device) runs on the worker that already holds the
customer, and a transaction with its features never crosses between the two steps.
The inference log routes rows the same way
(:class:`dataflows.connectors.inference_log.InferenceLogSink` ``part_fn``). What still
crosses: each event once, from the worker reading its Kafka partition (or file) to its
customer's worker, and each score, small, to its model version's drift step.
``tests/dataflows/test_placement.py`` checks all of it against where Bytewax really runs
keys.

>>> keys = shard_keys(4)
>>> [worker_of(k, 2) for k in keys], [worker_of(k, 4) for k in keys]
([0, 1, 0, 1], [0, 1, 2, 3])
>>> [worker_of(str(s), 2) for s in range(4)]   # the naive keys: all on worker 1
[1, 1, 1, 1]
>>> from features.records import shard_of
>>> all(worker_of(keys[shard_of(c, 4)], 2) == worker_of(c, 2) for c in ("C000001", "C000002", "dev-7"))
True
"""


from __future__ import annotations

import io
import os
import pickle
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, TypeVar

from features.keyhash import key_hash, siphash13
from settings.environment import bytewax_variables

C = TypeVar("C")

__all__ = ["MODULUS", "siphash13", "worker_of", "shard_keys", "owned_keys", "bytewax_options", "total_workers", "process_id",
           "recovery_partitions", "recovery_directory", "resuming", "enough_shards", "ResumePoint", "resume_point", "plain_unpickle"]

#: Shard keys are aligned modulo this: lcm(1..10).
MODULUS = 2520


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax 0.21.1 runs ``key`` of a stateful step on
    (:func:`features.keyhash.key_hash`: Rust hashes a ``String`` as its bytes followed
    by ``0xff``)."""
    return key_hash(key) % workers


@lru_cache(maxsize=64)
def _aligned_key(shard: int) -> str:
    target = shard % MODULUS
    if worker_of(f"shard-{shard}", MODULUS) == target:
        return f"shard-{shard}"
    j = 0
    while True:
        key = f"shard-{shard}.{j}"
        if worker_of(key, MODULUS) == target:
            return key
        j += 1


def shard_keys(shards: int) -> list[str]:
    """One routing key per shard, shard ``s`` on worker ``s % workers`` (see the module)."""
    return [_aligned_key(s) for s in range(shards)]


def owned_keys(argv: list[str], env: Mapping[str, str] | None = None) -> Callable[[str], bool] | None:
    """``owned(key)``: whether this process's worker runs ``key``'s stateful steps (one worker
    per process: worker index = process index), or None when that cannot be told (several
    worker threads per process, or a cluster without a process index, e.g. ``bytewax.testing -p``).

    >>> owned_keys(["bytewax.run", "m:flow"], {})("C000001")
    True
    >>> owned = [owned_keys(["bytewax.run", "m:flow", "-a", "a:1;b:1", "-i", str(i)], {}) for i in (0, 1)]
    >>> [[o(k) for o in owned] for k in ("C000001", "C000002")] == [[worker_of(k, 2) == i for i in (0, 1)] for k in ("C000001", "C000002")]
    True
    >>> owned_keys(["bytewax.run", "m:flow", "-w", "2"], {}) is None, owned_keys(["bytewax.testing", "m:flow", "-p", "2"], {}) is None
    (True, True)
    """
    env = bytewax_variables() if env is None else env
    opts = bytewax_options(argv)
    try:
        per_process = int(opts.get("-w") or env.get("BYTEWAX_WORKERS_PER_PROCESS") or 1)
    except ValueError:
        return None
    total = total_workers(argv, env) or 1
    if per_process != 1:
        return None
    if total == 1:
        return lambda key: True
    me = process_id(argv, env)
    if me is None:
        return None
    return lambda key: worker_of(key, total) == me


def total_workers(argv: list[str], env: Mapping[str, str] | None = None) -> int | None:
    """Workers of the whole run, from a ``bytewax.run`` / ``bytewax.testing`` command
    line (``-w`` per process times ``-p`` processes or the ``-a`` address list), each
    falling back, as ``bytewax.run`` does, on its variable (``BYTEWAX_WORKERS_PER_PROCESS``,
    ``BYTEWAX_ADDRESSES``, or ``BYTEWAX_HOSTFILE_PATH``'s lines for a process given by
    ``BYTEWAX_PROCESS_ID`` / ``BYTEWAX_POD_NAME``: ``env``, default
    :func:`settings.environment.bytewax_variables`); None when neither says.

    >>> total_workers(["-m", "bytewax.run", "m:flow", "-w", "2", "-a", "a:1;b:1", "-i", "0"], {})
    4
    >>> total_workers(["bytewax.testing", "m:flow", "-p", "2"], {}), total_workers(["x"], {})
    (2, None)
    >>> total_workers(["bytewax.run", "m:flow", "-w", "3"], {"BYTEWAX_ADDRESSES": "a:1;b:1"})
    6
    """
    env = bytewax_variables() if env is None else env
    per_proc: int | None = None
    procs: int | None = None
    opts = bytewax_options(argv)
    try:
        if "-w" in opts:
            per_proc = int(opts["-w"])
        if "-a" in opts:
            procs = _count_addresses(opts["-a"])
        elif "-p" in opts:
            procs = int(opts["-p"])
    except ValueError:
        return None
    try:
        if per_proc is None and env.get("BYTEWAX_WORKERS_PER_PROCESS"):
            per_proc = int(env["BYTEWAX_WORKERS_PER_PROCESS"])
        if procs is None and env.get("BYTEWAX_ADDRESSES"):
            procs = _count_addresses(env["BYTEWAX_ADDRESSES"])
        if procs is None and env.get("BYTEWAX_HOSTFILE_PATH") and process_id(argv, env) is not None:
            with open(env["BYTEWAX_HOSTFILE_PATH"]) as hostfile:
                procs = _count_addresses(";".join(hostfile))
    except (ValueError, OSError):
        return None
    if per_proc is None and procs is None:
        return None
    return (per_proc or 1) * (procs or 1)


def process_id(argv: list[str], env: Mapping[str, str] | None = None) -> int | None:
    """This process's index in a cluster, found as ``bytewax.run`` finds it: ``-i`` /
    ``--process-id``, else ``BYTEWAX_PROCESS_ID``, else the pod ordinal: ``BYTEWAX_POD_NAME``
    without the prefix ``BYTEWAX_STATEFULSET_NAME-`` (a StatefulSet's pod
    ``streamscore-fraud-2`` is process 2; the Helm chart sets both). None when neither
    says; ``ValueError`` naming the variables when the pod name has no ordinal.

    >>> process_id(["bytewax.run", "m:flow", "-i", "1"], {}), process_id(["x"], {"BYTEWAX_PROCESS_ID": "3"})
    (1, 3)
    >>> process_id(["x"], {"BYTEWAX_POD_NAME": "ss-fraud-2", "BYTEWAX_STATEFULSET_NAME": "ss-fraud"})
    2
    >>> process_id(["x"], {"BYTEWAX_POD_NAME": "ss-fraud-2"}) is None   # Bytewax needs both
    True
    """
    env = bytewax_variables() if env is None else env
    given = bytewax_options(argv).get("-i") or env.get("BYTEWAX_PROCESS_ID")
    if given:
        return int(given)
    pod, sts = env.get("BYTEWAX_POD_NAME"), env.get("BYTEWAX_STATEFULSET_NAME")
    if not (pod and sts):
        return None
    ordinal = pod[len(sts) + 1:] if pod.startswith(sts + "-") else ""
    if not ordinal.isdigit():
        raise ValueError(f"BYTEWAX_POD_NAME={pod!r} is not BYTEWAX_STATEFULSET_NAME={sts!r} followed by "
                         f"'-<ordinal>': no process index")
    return int(ordinal)


def recovery_partitions(process: int, partitions: int, initial_processes: int) -> list[int]:
    """The recovery partitions process ``process`` creates in its own recovery volume when
    that volume is empty: partition ``k`` lives on process ``k % initial_processes``, so
    the processes of the first deployment hold every partition exactly once; a process
    added later (``process >= initial_processes``) creates none (Bytewax moves state to
    it from the others' partitions). ``partitions`` is fixed for the deployment's life.

    >>> recovery_partitions(0, 4, 2), recovery_partitions(1, 4, 2), recovery_partitions(2, 4, 2)
    ([0, 2], [1, 3], [])
    """
    if partitions < 1 or initial_processes < 1 or process < 0:
        raise ValueError(f"recovery partitions: partitions={partitions}, initial processes={initial_processes} and "
                         f"process={process} must be >= 1, >= 1 and >= 0")
    return [k for k in range(partitions) if k % initial_processes == process]


_LONG = {"--workers-per-process": "-w", "--processes": "-p", "--addresses": "-a", "--process-id": "-i",
         "--recovery-directory": "-r"}


def bytewax_options(argv: list[str]) -> dict[str, str]:
    """The placement and recovery options of a ``bytewax.run`` / ``bytewax.testing``
    command line, by short name (``-w -p -a -i -r``), read as argparse reads them:
    ``-w 2``, ``-w2``, ``--workers-per-process=2``, an unambiguous prefix such as
    ``--work 2``; the last one given wins. The one reader of that command line.

    >>> bytewax_options(["bytewax.run", "m:flow", "-w2", "--recovery-dir", "rec", "-rother"])
    {'-w': '2', '-r': 'other'}
    """
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, value = _option(arg)
        if name is None:
            continue
        found[name] = value if value is not None else (argv[i + 1] if i + 1 < len(argv) else "")
    return found


def _option(arg: str) -> tuple[str | None, str | None]:
    """``(short name, attached value)`` of one option (see :func:`bytewax_options`),
    else ``(None, None)``."""
    if arg.startswith("--"):
        name, eq, value = arg.partition("=")
        matches = [short for long, short in _LONG.items() if len(name) > 2 and long.startswith(name)]
        return (matches[0], value if eq else None) if len(matches) == 1 else (None, None)
    if len(arg) >= 2 and arg[0] == "-" and arg[1] in "wpair":
        return "-" + arg[1], (arg[2:].lstrip("=") or None)
    return None, None


def recovery_directory(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The Bytewax recovery directory of this run (``-r`` / ``--recovery-directory``,
    attached or not, or ``BYTEWAX_RECOVERY_DIRECTORY``), or ``None`` without recovery.

    >>> recovery_directory(["bytewax.run", "m:flow", "-r", "rec"], {}), recovery_directory(["x"], {})
    ('rec', None)
    >>> recovery_directory(["bytewax.run", "m:flow", "-rrec"], {})
    'rec'
    """
    env = bytewax_variables() if environ is None else environ
    found = bytewax_options(sys.argv if argv is None else argv).get("-r")
    return found or env.get("BYTEWAX_RECOVERY_DIRECTORY") or None


def without_recovery(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run is known to have no recovery: started by Bytewax's command line
    (``python -m bytewax.run`` or ``bytewax.testing``) without a recovery directory. A flow
    run from code (``run_main(flow, recovery_config=...)``) may have recovery that the
    command line does not show: not known, so ``False``.

    >>> without_recovery(["/venv/lib/bytewax/run.py", "m:flow"], {}), without_recovery(["/venv/lib/bytewax/run.py", "m:flow", "-r", "rec"], {})
    (True, False)
    >>> without_recovery(["pytest"], {})
    False
    """
    argv = sys.argv if argv is None else argv
    launcher = Path(argv[0]) if argv else Path()
    by_cli = launcher.parent.name == "bytewax" and launcher.name in {"run.py", "testing.py"}
    return by_cli and recovery_directory(argv, environ) is None


def resuming(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run resumes from a Bytewax recovery store (``-r`` /
    ``--recovery-directory`` or ``BYTEWAX_RECOVERY_DIRECTORY``): then the output
    files are continued, not replaced."""
    return recovery_directory(argv, environ) is not None


class ResumePoint(NamedTuple):
    """Where a run with recovery resumes: the epoch, and the recovered snapshots of the
    state keys asked for (``{state_key: state}``; empty on a first run)."""

    epoch: int | None
    states: dict[str, Any]


def resume_point(directory: str | os.PathLike[str], key_suffix: str) -> ResumePoint:
    """Read Bytewax 0.21.1's recovery partitions (``part-*.sqlite3`` in ``directory``)
    as the run that starts now will: the resume epoch is the oldest worker frontier of
    the last execution, and each state key's state the newest snapshot before it.
    Only the state keys ``"<digits><key_suffix>"`` are read (e.g. the Kafka input's
    ``"<partition>-<topic>"``: ``key_suffix="-<topic>"``), selected in SQL, so a store
    holding millions of per-key states costs nothing more at start-up. Their snapshots
    are decoded as plain data only (:func:`plain_unpickle`: no class is ever loaded, no
    code runs). A store no execution has written yet (or that cannot be read) gives
    ``ResumePoint(None, {})``: a fresh start.
    """
    import sqlite3

    epochs: list[int] = []
    found: dict[str, list[tuple[int, bytes | None]]] = {}
    try:
        for path in sorted(Path(directory).glob("part-*.sqlite3")):
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                last = con.execute("SELECT MAX(ex_num) FROM exs").fetchone()[0]
                if last is None:
                    continue
                fronts = [f for (f,) in con.execute("SELECT worker_frontier FROM fronts WHERE ex_num = ?", (last,))]
                if not fronts:
                    fronts = [e for (e,) in con.execute("SELECT resume_epoch FROM exs WHERE ex_num = ?", (last,))]
                epochs.extend(fronts)
                rows = con.execute("SELECT state_key, snap_epoch, ser_change FROM snaps "
                                   "WHERE substr(state_key, -?) = ?", (len(key_suffix), key_suffix))
                for key, epoch, ser in rows:
                    if key[:-len(key_suffix)].isdigit():
                        found.setdefault(key, []).append((epoch, ser))
            finally:
                con.close()
    except sqlite3.Error:
        return ResumePoint(None, {})
    if not epochs:
        return ResumePoint(None, {})
    epoch = min(epochs)
    states: dict[str, Any] = {}
    for key, snaps in found.items():
        before = [s for s in snaps if s[0] < epoch]
        if before:
            ser = max(before, key=lambda s: s[0])[1]
            if ser is not None:  # None: the key was discarded
                try:
                    states[key] = plain_unpickle(ser)
                except pickle.UnpicklingError:
                    continue  # not plain data: not a Kafka offset, left out of the line
    return ResumePoint(epoch, states)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: {module}.{name} (plain data only)")


def plain_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` if it holds plain data only (numbers, text, bytes, None,
    tuples/lists/dicts of them); anything naming a class or function is refused with
    :class:`pickle.UnpicklingError`, so no code from the file ever runs.

    >>> plain_unpickle(pickle.dumps({"offset": 7, "parts": (1, 2)}))
    {'offset': 7, 'parts': (1, 2)}
    >>> plain_unpickle(pickle.dumps(Path("x")))
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refused: pathlib.PosixPath (plain data only)
    """
    return _PlainUnpickler(io.BytesIO(data)).load()


def _count_addresses(value: str) -> int:
    return len([a for a in value.replace("\n", ";").split(";") if a.strip()])


def enough_shards(cfg: C, argv: list[str] | None = None) -> C:
    """``cfg`` with ``shards`` raised to the next multiple of the run's worker count
    (read from the command line and the ``BYTEWAX_*`` variables): every worker gets
    shards of the shared detectors, and each key's shard (:func:`features.records.shard_of`)
    runs on the worker that holds the key (see the module); unchanged otherwise.

    >>> from types import SimpleNamespace as NS
    >>> class Cfg(NS):
    ...     def model_copy(self, update): return Cfg(**{**vars(self), **update})
    >>> [enough_shards(Cfg(shards=4), ["bytewax.run", "m:f", "-w", str(w)]).shards for w in (1, 2, 3, 4, 5)]
    [4, 4, 6, 4, 5]
    """
    workers = total_workers(sys.argv if argv is None else argv)
    shards: Any = getattr(cfg, "shards")
    if workers and shards % workers:
        return cfg.model_copy(update={"shards": -(-shards // workers) * workers})  # type: ignore[attr-defined]
    return cfg
