"""Render the Helm chart (deploy/helm/streamscore) with the project's pinned Helm, for the
tests: what each process of a flow is told (its environment, its hostfile, its recovery
init step), as a plain dict per pod."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "streamscore"
PRODUCTION = CHART / "values-production.yaml"


def helm() -> str:
    """The pinned Helm (scripts/helm.sh builds it into .tools/bin when missing)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "helm.sh"), "path"], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def run_helm(*args: str) -> str:
    out = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stderr[-3000:]}"
    return out.stdout


def render(*values: Path, sets: tuple[str, ...] = (), release: str = "ss", namespace: str = "scoring") -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run_helm(*args)) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@dataclass
class Pod:
    """One process of a flow as the chart runs it: the container's args and environment
    (values; fieldRefs resolved for this pod), the init step's, the hostfile's lines."""

    name: str
    args: list[str]
    env: dict[str, str]
    init_args: list[str] | None
    init_env: dict[str, str]
    hostfile: list[str]
    mounts: dict[str, str]


def _env(container: dict, pod: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = pod
    return env


def flow_pods(docs: list[dict], sts_name: str) -> list[Pod]:
    """The pods of the flow's StatefulSet ``sts_name``, one per replica (ordinal)."""
    sts = find(docs, "StatefulSet", sts_name)
    spec = sts["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    inits = spec.get("initContainers", [])
    volumes = {v["name"]: v for v in spec["volumes"]}
    hostfile_cm = find(docs, "ConfigMap", volumes["hostfile"]["configMap"]["name"])
    lines = [ln for ln in hostfile_cm["data"]["hostfile.txt"].splitlines() if ln.strip()]
    pods = []
    for i in range(sts["spec"]["replicas"]):
        name = f"{sts_name}-{i}"
        pods.append(Pod(name=name, args=main["args"], env=_env(main, name),
                        init_args=inits[0]["args"] if inits else None,
                        init_env=_env(inits[0], name) if inits else {},
                        hostfile=lines, mounts={m["name"]: m["mountPath"] for m in main["volumeMounts"]}))
    return pods


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]
