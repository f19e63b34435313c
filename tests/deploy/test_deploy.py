"""Checks deploy/k8s and docker/ against the binaries they run, without a cluster or a Docker
engine (neither is on the CI machine): every flag a manifest or image passes exists in that
binary's --help, ports line up between arguments, container ports, probes and the Service, the
worker dials the Service, and the Dockerfile's stages and COPY sources exist.

The binaries come from RADIAL_SCHEDULER_BIN / RADIAL_WORKER_BIN (set by ctest)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
BINARIES = {"radial-scheduler": "RADIAL_SCHEDULER_BIN", "radial-worker": "RADIAL_WORKER_BIN"}


def _binary(name):
    path = os.environ.get(BINARIES[name])
    if not path:
        pytest.skip(f"{BINARIES[name]} is not set (ctest sets it)")
    return path


def _flags_of(name):
    """The --flags a binary's usage text names."""
    result = subprocess.run([_binary(name), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"--[a-z][a-z0-9-]*", result.stdout))


def _flag_pairs(args):
    """["--a", "1", "--b", "2"] -> {"--a": "1", "--b": "2"}; every flag takes a value."""
    assert len(args) % 2 == 0, f"flags come in --name value pairs: {args}"
    pairs = dict(zip(args[0::2], args[1::2]))
    assert all(key.startswith("--") for key in pairs), args
    return pairs


def _documents():
    """The manifests as kubectl would apply them: rendered by kustomize when kubectl is installed,
    otherwise the files kustomization.yaml lists."""
    if shutil.which("kubectl"):
        rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                                  timeout=60)
        assert rendered.returncode == 0, rendered.stderr
        return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        docs += [doc for doc in yaml.safe_load_all((K8S / resource).read_text()) if doc]
    return docs


def _one(docs, kind, name):
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _container(workload):
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="module")
def docs():
    return _documents()


def test_every_resource_is_namespaced_and_labelled(docs):
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["Deployment", "Namespace", "PersistentVolumeClaim", "Service", "Service", "StatefulSet"]
    for doc in docs:
        if doc["kind"] != "Namespace" and shutil.which("kubectl"):
            assert doc["metadata"]["namespace"] == "radial", doc["metadata"]
        if shutil.which("kubectl"):
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "radial"


def test_scheduler_flags_ports_and_probes(docs):
    scheduler = _one(docs, "StatefulSet", "radial-scheduler")
    container = _container(scheduler)
    args = _flag_pairs(container["args"])
    assert set(args) <= _flags_of("radial-scheduler"), set(args) - _flags_of("radial-scheduler")
    port = int(args["--listen"].rsplit(":", 1)[1])
    worker_port = int(args["--worker-listen"].rsplit(":", 1)[1])
    health_port = int(args["--health-listen"].rsplit(":", 1)[1])
    for flag in ("--listen", "--worker-listen", "--health-listen"):
        assert args[flag].startswith("0.0.0.0:"), f"{flag} must listen on all interfaces in a pod"
    assert [p["containerPort"] for p in container["ports"]] == [port, worker_port, health_port]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == health_port, "kubelet probes cannot speak TLS: " + probe
    # Not loopback, so the scheduler refuses to start without TLS and both kinds of tokens.
    assert {"--tls-cert", "--tls-key", "--tokens", "--worker-tokens"} <= set(args)
    assert "--insecure" not in args
    secret_mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for flag in ("--tls-cert", "--tls-key", "--tokens", "--worker-tokens"):
        assert any(args[flag].startswith(path + "/") for path in secret_mounts), flag
    # The data dir is the StatefulSet's own persistent volume, or a restart loses every job.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    templates = {t["metadata"]["name"] for t in scheduler["spec"]["volumeClaimTemplates"]}
    assert any(args["--data-dir"] == path and name in templates for name, path in mounts.items()), (mounts, templates)
    service = _one(docs, "Service", "radial-scheduler")
    assert service["spec"]["selector"] == scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert scheduler["spec"]["selector"]["matchLabels"].items() <= \
        scheduler["spec"]["template"]["metadata"]["labels"].items()


def test_worker_dials_the_service_and_gets_a_gpu(docs):
    worker = _one(docs, "Deployment", "radial-worker")
    container = _container(worker)
    args = _flag_pairs(container["args"])
    assert set(args) <= _flags_of("radial-worker"), set(args) - _flags_of("radial-worker")
    service = _one(docs, "Service", "radial-scheduler-workers")
    host, port = args["--scheduler"].rsplit(":", 1)
    assert host == service["metadata"]["name"] and int(port) == service["spec"]["ports"][0]["port"]
    scheduler = _container(_one(docs, "StatefulSet", "radial-scheduler"))
    assert int(port) == int(_flag_pairs(scheduler["args"])["--worker-listen"].rsplit(":", 1)[1])
    assert "--tls-ca" in args, "workers verify the scheduler's certificate"
    env = {e["name"]: e for e in container["env"]}
    assert env["RADIAL_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"]["name"], "the worker token comes from a Secret"
    assert args["--device"].startswith("cuda")
    # Kubernetes kills the pod at the end of its grace period: the drain must fit inside it.
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(args["--drain-seconds"]) >= 600, (grace, args["--drain-seconds"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert args["--bundle"].startswith(mounts["models"]["mountPath"] + "/")
    volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    _one(docs, "PersistentVolumeClaim", claim)


def _dockerfile_stages():
    """[(stage name, [instruction lines])] with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
            assert match, f"every stage is named: {line}"
            stages.append((match.group(1), []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def test_dockerfile_stages_copies_and_entrypoints():
    stages = _dockerfile_stages()
    names = [name for name, _ in stages]
    assert names == ["build", "scheduler", "worker"]
    for name, lines in stages:
        for line in lines:
            if not line.upper().startswith("COPY "):
                continue
            parts = line.split()[1:]
            from_stage = next((p.split("=", 1)[1] for p in parts if p.startswith("--from=")), None)
            sources = [p for p in parts if not p.startswith("--")][:-1]
            if from_stage:
                assert from_stage in names[:names.index(name)], f"{name}: {line}"
            else:
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY source {source} does not exist"
    for name, binary in (("scheduler", "radial-scheduler"), ("worker", "radial-worker")):
        lines = dict(stages)[name]
        entrypoint = json.loads(next(l for l in lines if l.startswith("ENTRYPOINT"))[len("ENTRYPOINT"):])
        assert Path(entrypoint[0]).name == binary
        copied = [l for l in lines if l.startswith("COPY") and entrypoint[0].rsplit("/", 1)[0] in l]
        assert copied, f"{name}: nothing copies {entrypoint[0]}"
        cmd = json.loads(next(l for l in lines if l.startswith("CMD"))[len("CMD"):])
        assert set(_flag_pairs(cmd)) <= _flags_of(binary)


def test_collect_libs_copies_what_the_scheduler_links(tmp_path):
    result = subprocess.run([str(ROOT / "docker" / "collect-libs.sh"), str(tmp_path),
                             _binary("radial-scheduler")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    copied = {p.name for p in tmp_path.iterdir()}
    assert any(name.startswith("libgrpc++.so") for name in copied), copied
    assert not any(name.startswith("libc.so") for name in copied)
