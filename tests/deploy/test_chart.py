"""The Helm chart (deploy/helm/streamscore): helm lint and helm template with the default and
the production values, every rendered manifest valid against the Kubernetes schemas
(kubernetes-validate, offline), and what the pods will run: one address per process, the
process index from the pod ordinal, recovery partitions that cover the deployment once."""

from __future__ import annotations

import json
import math

import kubernetes_validate
import pytest

from dataflows.placement import process_id, recovery_partitions, total_workers
from tests.deploy.chart import CHART, PRODUCTION, find, flow_pods, option, render, run_helm

#: Kubernetes versions the manifests are checked against (the chart's kubeVersion is >= 1.27)
K8S_VERSIONS = ("1.30.0", "1.37.0")
#: kinds from CRDs, outside the Kubernetes schemas, checked by hand below
CRD_KINDS = {"PodMonitor"}


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_helm_lint_passes(values):
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["-f", str(v)]
    assert "0 chart(s) failed" in run_helm(*args)


@pytest.mark.parametrize("values", [(), (PRODUCTION,)], ids=["default", "production"])
def test_every_rendered_manifest_is_valid_kubernetes(values):
    docs = render(*values)
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "ConfigMap", "Deployment", "HorizontalPodAutoscaler"} <= kinds
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in K8S_VERSIONS:  # raises naming the field on any error, unknown fields too
            kubernetes_validate.validate(doc, version, strict=True)
    if values:
        assert {"Job", "CronJob", "PodMonitor"} <= kinds
        monitor = find(docs, "PodMonitor", "ss-streamscore")
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics", "http"}


@pytest.mark.parametrize("values,flows", [((), {"fraud": (2, 1)}), ((PRODUCTION,), {"fraud": (4, 1), "iot": (2, 1)})],
                         ids=["default", "production"])
def test_each_pod_is_one_process_of_its_flow_with_its_ordinal_and_the_same_addresses(values, flows, tmp_path):
    docs = render(*values)
    for flow, (processes, workers) in flows.items():
        sts = f"ss-streamscore-{flow}"
        pods = flow_pods(docs, sts)
        assert len(pods) == processes
        svc = find(docs, "Service", sts)
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
        assert find(docs, "StatefulSet", sts)["spec"]["serviceName"] == sts
        port = find(docs, "StatefulSet", sts)["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        # one address per process, in ordinal order, each the pod's name under the headless Service
        expected = [f"{sts}-{i}.{sts}.scoring.svc.cluster.local:{port}" for i in range(processes)]
        for i, pod in enumerate(pods):
            assert pod.hostfile == expected
            assert pod.env["BYTEWAX_HOSTFILE_PATH"].startswith(pod.mounts["hostfile"] + "/")
            # the index Bytewax (bytewax.run) and the project (placement) read: the ordinal
            assert process_id([], pod.env) == i
            hostfile = tmp_path / f"{pod.name}.txt"
            hostfile.write_text("\n".join(pod.hostfile) + "\n")
            assert total_workers([], {**pod.env, "BYTEWAX_HOSTFILE_PATH": str(hostfile)}) == processes * workers
            assert pod.args == ["flow", f"dataflows.{flow}:flow"]
            assert pod.env["BYTEWAX_WORKERS_PER_PROCESS"] == str(workers)
            assert pod.env["STREAMSCORE_CONFIG"].startswith(pod.mounts["settings"] + "/")


@pytest.mark.parametrize("values,sets,partitions,initial", [
    ((), (), 2, 2),                                              # derived: 2 processes x 1 worker
    ((), ("flows.fraud.workersPerProcess=3",), 6, 2),
    ((PRODUCTION,), (), 16, 4),                                  # pinned
    # the documented scale-up: processes 2 -> 3 with the install's numbers pinned
    ((), ("flows.fraud.processes=3", "flows.fraud.recovery.partitions=2",
          "flows.fraud.recovery.initialProcesses=2"), 2, 2),
], ids=["default", "workers", "production", "scaled-up"])
def test_recovery_partitions_cover_the_deployment_once(values, sets, partitions, initial):
    pods = flow_pods(render(*values, sets=sets), "ss-streamscore-fraud")
    held: list[int] = []
    for i, pod in enumerate(pods):
        assert pod.init_args[0] == "init-recovery"
        assert int(option(pod.init_args, "--partitions")) == partitions
        assert int(option(pod.init_args, "--initial-processes")) == initial
        assert process_id([], pod.init_env) == i
        assert pod.init_env["BYTEWAX_RECOVERY_DIRECTORY"] == pod.env["BYTEWAX_RECOVERY_DIRECTORY"] \
            == pod.mounts["recovery"]
        held += recovery_partitions(i, partitions, initial)
    assert sorted(held) == list(range(partitions))  # every partition on exactly one process


def test_memory_is_sized_from_the_benchmarks_per_key_figure():
    docs = render()
    sts = find(docs, "StatefulSet", "ss-streamscore-fraud")
    res = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    # values.yaml: 1,000,000 keys over 2 processes, 1,832 B/key (docs/benchmarks.md), x1.5, + 512 MiB
    mib = 512 + math.ceil(500_000 * 1832 * 150 // 100 / 2**20)
    assert res["requests"]["memory"] == res["limits"]["memory"] == f"{mib}Mi"
    more = find(render(sets=("flows.fraud.processes=4",)), "StatefulSet", "ss-streamscore-fraud")
    assert int(more["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"][:-2]) < mib


def test_the_endpoint_runs_several_workers_per_pod_and_scales_on_cpu():
    docs = render(PRODUCTION)
    dep = find(docs, "Deployment", "ss-streamscore-endpoint")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][0] == "serve" and option(c["args"], "--workers") == "4"
    assert c["resources"]["requests"]["cpu"] == "2000m"
    hpa = find(docs, "HorizontalPodAutoscaler", "ss-streamscore-endpoint")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ss-streamscore-endpoint"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)


def test_settings_dashboard_and_jobs():
    from tests.conftest import ROOT

    docs = render(PRODUCTION)
    settings = find(docs, "ConfigMap", "ss-streamscore-settings")
    assert settings["data"]["streamscore.toml"].strip() == (ROOT / "streamscore.toml").read_text().strip()
    dash = find(docs, "ConfigMap", "ss-streamscore-dashboard")
    assert json.loads(dash["data"]["streamscore-dashboard.json"]) == json.loads(
        (ROOT / "infra" / "grafana" / "streamscore-dashboard.json").read_text())
    apply = find(docs, "Job", "ss-streamscore-feast-apply")
    assert apply["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "apply"
    land = find(docs, "CronJob", "ss-streamscore-log-land")
    args = land["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["streamscore", "log", "land"]
    # secrets come from the Secret, never from the chart's values in production
    assert not [d for d in docs if d["kind"] == "Secret"]
