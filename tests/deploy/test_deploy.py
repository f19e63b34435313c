"""Checks deploy/k8s and docker/ without a cluster or a Docker engine (neither is on the CI machine).

Every overlay (deploy/k8s/overlays/*) is rendered with `kubectl kustomize` (deploy/k8s itself must
render the same as overlays/gpu, the default), then:
- built-in kinds: kubernetes-validate --strict against the oldest and newest Kubernetes this
  supports (schemas ship with the package; no schema may be missing except for the CRD kinds);
- CRD kinds (ScaledObject, ServiceMonitor, PodMonitor, PrometheusRule): parsed by Pydantic models
  generated from KEDA's and the Prometheus Operator's CRD schemas (cloudcoil-models-*), and a field
  the model drops or changes (unknown, misspelt, wrong type) fails; plus the fields the setup
  relies on, checked by name below;
- checkov with no failed check, every skipped one listed with its reason in deploy/README.md;
- the restricted Pod Security Standard on every pod template, images pinned, NetworkPolicies
  evaluated for who may reach which port, the monitoring objects against deploy/prometheus and
  deploy/grafana, the autoscalers and their query (evaluated by promtool on synthetic series);
- the manifests against the binaries: every flag exists in the binary's --help, ports agree between
  arguments, container ports, probes, Services and monitors; then a real radial-scheduler runs with
  each overlay's arguments and the Secrets make-secrets.sh writes (TLS, tokens), and for cpu-demo
  the export Job's script writes the tiny bundle and a real radial-worker runs with the worker's
  arguments, connects and passes its readiness probe.
Not checked (no cluster): that a cluster accepts and runs the objects, the CRDs' admission webhooks,
KEDA, prometheus-adapter, Grafana, the CNI's enforcement, the images themselves.

Tools: kubectl (>= 1.27, kustomize v5); .venv/deploy (scripts/setup.sh, from
deploy/requirements-validate.txt) for kubernetes-validate, checkov and the CRD models; promtool and
openssl (setup.sh). Binaries from RADIAL_SCHEDULER_BIN / RADIAL_WORKER_BIN (set by ctest); the
tiny bundle's exporter needs the repository's .venv and libradial_ops.so next to the worker's build."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["gpu", "gpu-hpa", "cpu-demo"]
GPU_OVERLAYS = ["gpu", "gpu-hpa"]
README = ROOT / "deploy" / "README.md"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
TOOLS = ROOT / ".venv" / "deploy" / "bin"
BINARIES = {"radial-scheduler": "RADIAL_SCHEDULER_BIN", "radial-worker": "RADIAL_WORKER_BIN"}
# The Kubernetes versions validated against: the oldest deploy/README.md promises (gRPC probes and
# the PodDisruptionBudget's unhealthyPodEvictionPolicy need 1.27 at least) and the newest the
# pinned kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
# Pod Security Standard "restricted": the volume types it allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
# What kubectl apply (client-side) can store in its last-applied annotation: 256 KiB of annotations.
ANNOTATION_LIMIT = 262144


# ---------------------------------------------------------------------------------------------
# Helpers


def _binary(name):
    path = os.environ.get(BINARIES[name])
    if not path:
        pytest.skip(f"{BINARIES[name]} is not set (ctest sets it)")
    return path


def _tool(name):
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (it installs deploy/requirements-validate.txt)")
    return str(path)


def _kubectl():
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl (>= 1.27, with kustomize v5) is needed to render deploy/k8s; Debian's "
                    "kubernetes-client is too old")
    return path


_FLAGS = {}


def _flags_of(name):
    """The --flags a binary's usage text names."""
    if name not in _FLAGS:
        result = subprocess.run([_binary(name), "--help"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        _FLAGS[name] = set(re.findall(r"--[a-z][a-z0-9-]*", result.stdout))
    return _FLAGS[name]


def _flag_pairs(args):
    """["--a", "1", "--b", "2"] -> {"--a": "1", "--b": "2"}; every flag takes a value."""
    assert len(args) % 2 == 0, f"flags come in --name value pairs: {args}"
    pairs = dict(zip(args[0::2], args[1::2]))
    assert all(key.startswith("--") for key in pairs), args
    return pairs


def _port(address):
    return int(address.rsplit(":", 1)[1])


def _render(path):
    result = subprocess.run([_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {path}: {result.stderr}"
    return result.stdout


_RENDERED = {}


def _rendered(overlay):
    """(text, documents) of `kubectl kustomize deploy/k8s/overlays/<overlay>`."""
    if overlay not in _RENDERED:
        text = _render(K8S / "overlays" / overlay)
        _RENDERED[overlay] = (text, [doc for doc in yaml.safe_load_all(text) if doc])
    return _RENDERED[overlay]


def _docs(overlay):
    return _rendered(overlay)[1]


def _generated_name(name):
    """A configMapGenerator name without its hash suffix."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def _find(docs, kind, name=None):
    return [doc for doc in docs if doc["kind"] == kind
            and (name is None or _generated_name(doc["metadata"]["name"]) == name)]


def _one(docs, kind, name):
    found = _find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _container(workload, name=None):
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def _pod_templates(docs):
    return [(doc, doc["spec"]["template"]) for doc in docs if doc["kind"] in WORKLOADS]


def _all_containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def _config_value(docs, ref):
    configmap = next(doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == ref["name"])
    return configmap["data"][ref["key"]]


def _env(docs, container):
    """{name: value} of a container's environment as kubelet sets it; Secret values as
    ('secret', name, key)."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in item["valueFrom"]:
            env[item["name"]] = _config_value(docs, item["valueFrom"]["configMapKeyRef"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = ("secret", ref["name"], ref["key"])
    return env


def _expand(args, env):
    """Kubelet's $(VAR) expansion of a container's args."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def _args(docs, container):
    return _flag_pairs(_expand(container["args"], _env(docs, container)))


def _mounts(container):
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def _volumes(pod_spec):
    return {v["name"]: v for v in pod_spec.get("volumes", [])}


def _readme():
    return README.read_text()


def _overlay_param():
    return pytest.mark.parametrize("overlay", OVERLAYS)


# ---------------------------------------------------------------------------------------------
# Rendering and validation


def test_every_overlay_renders_and_the_default_is_gpu():
    for overlay in OVERLAYS:
        _rendered(overlay)
    assert sorted(p.name for p in (K8S / "overlays").iterdir()) == sorted(OVERLAYS)
    assert _render(K8S) == _rendered("gpu")[0], "deploy/k8s (kubectl apply -k deploy/k8s) is overlays/gpu"


EXPECTED = {
    "base": {("Namespace", "radial"), ("ServiceAccount", "radial-scheduler"), ("ServiceAccount", "radial-worker"),
             ("ServiceAccount", "radial-export"), ("ConfigMap", "radial-model"), ("Service", "radial-scheduler"),
             ("Service", "radial-scheduler-workers"), ("Service", "radial-scheduler-headless"),
             ("StatefulSet", "radial-scheduler"), ("Deployment", "radial-worker"),
             ("PodDisruptionBudget", "radial-worker"), ("PersistentVolumeClaim", "radial-models"),
             ("Job", "radial-export-models"), ("NetworkPolicy", "radial-default-deny"),
             ("NetworkPolicy", "radial-scheduler-clients"), ("NetworkPolicy", "radial-scheduler-workers"),
             ("NetworkPolicy", "radial-worker-egress"), ("NetworkPolicy", "radial-metrics")},
    "monitoring": {("ServiceMonitor", "radial-scheduler"), ("PodMonitor", "radial-worker"),
                   ("PrometheusRule", "radial"), ("ConfigMap", "radial-grafana-dashboard")},
}


@_overlay_param()
def test_objects_namespaced_and_labelled(overlay):
    docs = _docs(overlay)
    found = [(doc["kind"], _generated_name(doc["metadata"]["name"])) for doc in docs]
    assert len(found) == len(set(found)), "an object appears twice"
    expected = set(EXPECTED["base"])
    if overlay in GPU_OVERLAYS:
        expected |= EXPECTED["monitoring"] | {("PersistentVolumeClaim", "radial-checkpoints")}
        expected.add(("ScaledObject", "radial-worker") if overlay == "gpu" else
                     ("HorizontalPodAutoscaler", "radial-worker"))
    assert set(found) == expected, (set(found) - expected, expected - set(found))
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "radial", doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "radial", doc["metadata"]
        size = len(json.dumps(doc))
        assert size < ANNOTATION_LIMIT, f"{doc['kind']} {doc['metadata']['name']}: {size} bytes, too big for kubectl apply"


@_overlay_param()
def test_kubernetes_validate_strict(overlay, tmp_path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(_rendered(overlay)[0])
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run([_tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(manifest)],
                                capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"Kubernetes {version}: {output}"
        # A kind without a schema is only a warning there: allow it for the CRDs (validated below)
        # alone, so that a misspelt apiVersion of a built-in kind fails.
        missing = set(re.findall(r"Couldn't find schema for kind (\w+)", output))
        assert missing <= CRD_KINDS, f"Kubernetes {version}: no schema for {missing - CRD_KINDS}: {output}"
        assert "ERROR" not in output, output


# Run by .venv/deploy's Python: each CRD object (JSON on stdin) through the model generated from its
# CRD's schema; prints the differences between the object and what the model kept of it.
_CRD_CHECK = r"""
import json, sys
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor
MODELS = {("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
          ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
          ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor,
          ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule}

def diff(path, given, kept, out):
    if isinstance(given, dict) and isinstance(kept, dict):
        for key in given:
            if key not in kept:
                out.append(f"{path}.{key}: not in the schema")
            else:
                diff(f"{path}.{key}", given[key], kept[key], out)
    elif isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for i, (a, b) in enumerate(zip(given, kept)):
            diff(f"{path}[{i}]", a, b, out)
    elif given != kept or type(given) is not type(kept):
        out.append(f"{path}: {given!r} read as {kept!r}")

problems = []
for doc in json.load(sys.stdin):
    where = f"{doc['kind']} {doc['metadata']['name']}"
    model = MODELS.get((doc["apiVersion"], doc["kind"]))
    if model is None:
        problems.append(f"{where}: no model for {doc['apiVersion']}")
        continue
    try:
        kept = model.model_validate(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    except Exception as error:
        problems.append(f"{where}: {error}")
        continue
    diff(where, doc, kept, problems)
print(json.dumps(problems))
"""


_CRD_PROBLEMS = {}


def _crd_problems(overlay):
    """The schema models' findings on each overlay's CRD objects (one process for all overlays:
    importing the models takes seconds)."""
    if not _CRD_PROBLEMS:
        objects = [dict(doc, metadata=dict(doc["metadata"], name=f"{each}:{doc['metadata']['name']}"))
                   for each in OVERLAYS for doc in _docs(each) if doc["kind"] in CRD_KINDS]
        result = subprocess.run([_tool("python"), "-c", _CRD_CHECK], input=json.dumps(objects),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        problems = json.loads(result.stdout)
        for each in OVERLAYS:
            _CRD_PROBLEMS[each] = [p for p in problems if p.split(" ", 1)[1].startswith(f"{each}:")]
    return _CRD_PROBLEMS[overlay]


@_overlay_param()
def test_crds_against_their_schemas(overlay):
    if overlay == "cpu-demo":
        assert not [doc for doc in _docs(overlay) if doc["kind"] in CRD_KINDS], "the demo needs no CRDs"
    assert _crd_problems(overlay) == []


_CHECKOV = {}


def _checkov(overlay, tmp_path):
    """(return code, JSON report) of checkov on the rendered overlay; run once per overlay."""
    if overlay not in _CHECKOV:
        manifest = tmp_path / f"{overlay}.yaml"
        manifest.write_text(_rendered(overlay)[0])
        # --skip-download: no call to Prisma Cloud for guidelines (offline).
        result = subprocess.run([_tool("checkov"), "-f", str(manifest), "--framework", "kubernetes",
                                 "--skip-download", "--output", "json"], capture_output=True, text=True, timeout=600,
                                cwd=tmp_path)
        _CHECKOV[overlay] = (result.returncode, json.loads(result.stdout))
    return _CHECKOV[overlay]


def _readme_checkov_rows():
    """[(check id, {"Kind name", ...}, reason)] of deploy/README.md's table of skipped checks."""
    rows = re.findall(r"^\| `(CKV2?_K8S_\d+)`[^|]* \| ([^|]+) \| ([^|]+) \|$", _readme(), re.M)
    return [(check, {r.strip() for r in resources.split(",")}, reason) for check, resources, reason in rows]


def _readme_checkov_table():
    return {check: reason for check, _, reason in _readme_checkov_rows()}


@_overlay_param()
def test_checkov_passes_and_every_skip_is_documented(overlay, tmp_path):
    returncode, report = _checkov(overlay, tmp_path)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and returncode == 0, failed
    # It reads every object, and each workload's pod template once more as a Pod.
    docs = _docs(overlay)
    assert summary["parsing_errors"] == 0 and summary["resource_count"] == len(docs) + len(_pod_templates(docs))
    checked = {c["resource"].split(".")[0] for kind in ("passed_checks", "skipped_checks")
               for c in report["results"][kind]}
    assert {"Pod", "Deployment", "StatefulSet", "Job"} <= checked, checked
    assert summary["passed"] > 100, summary
    pinned = re.search(r"^checkov==(\S+)$", (ROOT / "deploy" / "requirements-validate.txt").read_text(), re.M)[1]
    assert summary["checkov_version"] == pinned and f"checkov {pinned}" in _readme()
    documented = _readme_checkov_table()
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= set(documented), f"skipped in the manifests but not in deploy/README.md: {skipped - set(documented)}"
    # Each skip annotation carries its reason too.
    for doc in _docs(overlay):
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, reason = value.split("=", 1)
                assert check in documented and len(reason) > 40, value


def test_readme_lists_no_skip_that_is_not_used(tmp_path):
    used = {}
    for overlay in OVERLAYS:
        for check in _checkov(overlay, tmp_path)[1]["results"]["skipped_checks"]:
            kind, _, name = check["resource"].split(".", 2)
            used.setdefault(check["check_id"], set()).add(f"{kind} {name}")
    assert {check: resources for check, resources, _ in _readme_checkov_rows()} == used


# ---------------------------------------------------------------------------------------------
# Pod security, images


@_overlay_param()
def test_restricted_pod_security_on_every_pod(overlay):
    docs = _docs(overlay)
    namespace = _one(docs, "Namespace", "radial")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    templates = _pod_templates(docs)
    assert {doc["kind"] for doc, _ in templates} == {"Deployment", "StatefulSet", "Job"}
    for doc, template in templates:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        spec = template["spec"]
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, where
        assert pod_context.get("runAsUser", 0) != 0, where
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), f"{where}: {field}"
        assert spec.get("automountServiceAccountToken") is False, f"{where}: no Kubernetes API access needed"
        assert spec.get("serviceAccountName") == doc["metadata"]["labels"]["app.kubernetes.io/name"]
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        volumes = _volumes(spec)
        for container in _all_containers(spec):
            who = f"{where} container {container['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, who
            assert context.get("privileged") is not True, who
            assert context.get("capabilities", {}).get("drop") == ["ALL"], who
            assert set(context.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, who
            assert context.get("runAsUser", 1) != 0 and context.get("runAsNonRoot", True) is True, who
            assert context.get("readOnlyRootFilesystem") is True, who
            for port in container.get("ports", []):
                assert "hostPort" not in port, who
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], who
            # The writable places are explicit volumes: /tmp an emptyDir in every long-running or
            # Python container (the wait-for-bundle loop writes nothing).
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            if container["name"] != "wait-for-bundle":
                assert "emptyDir" in volumes[mounts["/tmp"]["name"]], who
            for mount in mounts.values():
                if not mount.get("readOnly"):
                    kind = set(volumes.get(mount["name"], {"pvc-template": 1})) - {"name"}
                    assert kind <= {"emptyDir", "persistentVolumeClaim", "pvc-template"}, f"{who}: {mount}"


@_overlay_param()
def test_images_are_pinned(overlay):
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for image in kustomization["images"]:
        assert image.get("digest") or (image.get("newTag") and image["newTag"] != "latest"), image
    for doc, template in _pod_templates(_docs(overlay)):
        for container in _all_containers(template["spec"]):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert "@sha256:" in image or (name and tag and tag != "latest" and "/" not in tag), image
            assert Path(name).name in {*BINARIES, "radial-exporter"}, image


def test_an_overlay_of_your_own_sets_registry_and_tags(tmp_path):
    """deploy/README.md's way to point at your registry: a kustomization of your own on top of an
    overlay, with images: entries (a tag or a digest) that win over the base's."""
    digest = "sha256:" + "ab" * 32
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / "gpu", tmp_path)],
        "images": [{"name": "radial-scheduler", "newName": "registry.example.com/radial-scheduler", "newTag": "1.2.3"},
                   {"name": "radial-worker", "newName": "registry.example.com/radial-worker", "digest": digest},
                   {"name": "radial-exporter", "newName": "registry.example.com/radial-exporter", "newTag": "1.2.3"}]}))
    images = {c["image"] for _, t in _pod_templates([d for d in yaml.safe_load_all(_render(tmp_path)) if d])
              for c in _all_containers(t["spec"])}
    assert images == {"registry.example.com/radial-scheduler:1.2.3", f"registry.example.com/radial-worker@{digest}",
                      "registry.example.com/radial-exporter:1.2.3"}


# ---------------------------------------------------------------------------------------------
# The scheduler and the workers against their binaries


@_overlay_param()
def test_scheduler_flags_ports_and_probes(overlay):
    docs = _docs(overlay)
    scheduler = _one(docs, "StatefulSet", "radial-scheduler")
    container = _container(scheduler)
    args = _args(docs, container)
    assert set(args) <= _flags_of("radial-scheduler"), set(args) - _flags_of("radial-scheduler")
    listen = {flag: _port(args[flag]) for flag in ("--listen", "--worker-listen", "--health-listen", "--metrics-listen")}
    for flag in listen:
        assert args[flag].startswith("0.0.0.0:"), f"{flag} must listen on all interfaces in a pod"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": listen["--listen"], "workers": listen["--worker-listen"],
                     "health": listen["--health-listen"], "metrics": listen["--metrics-listen"]}
    assert listen["--metrics-listen"] == 9090
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == listen["--health-listen"], "kubelet probes cannot speak TLS: " + probe
    # Not loopback, so the scheduler refuses to start without TLS and both kinds of tokens.
    assert {"--tls-cert", "--tls-key", "--tokens", "--worker-tokens"} <= set(args)
    assert "--insecure" not in args
    mounts = _mounts(container)
    volumes = _volumes(scheduler["spec"]["template"]["spec"])
    for flag, secret, key in (("--tls-cert", "radial-tls", "tls.crt"), ("--tls-key", "radial-tls", "tls.key"),
                              ("--tokens", "radial-tokens", "tokens"),
                              ("--worker-tokens", "radial-tokens", "worker-tokens")):
        mount = next(m for m in mounts.values() if args[flag] == m["mountPath"] + "/" + key)
        assert mount["readOnly"] and volumes[mount["name"]]["secret"]["secretName"] == secret, flag
    # The data dir is the StatefulSet's own persistent volume, or a restart loses every job; it holds
    # more than --retain-bytes of videos.
    templates = {t["metadata"]["name"]: t for t in scheduler["spec"]["volumeClaimTemplates"]}
    data = next(m for m in mounts.values() if m["mountPath"] == args["--data-dir"])
    assert data["name"] in templates and data["name"] not in volumes
    storage = templates[data["name"]]["spec"]["resources"]["requests"]["storage"]
    assert storage.endswith("Gi") and int(storage[:-2]) * 2**30 > int(args["--retain-bytes"]), storage
    assert (storage, args["--retain-bytes"]) == (("1Gi", "536870912") if overlay == "cpu-demo" else
                                                 ("50Gi", "42949672960"))
    assert args["--data-dir"] == "/var/lib/radial"
    assert scheduler["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    # Services: clients, workers, and the headless one that governs the StatefulSet and alone has
    # the metrics port.
    labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert scheduler["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name, port_name in (("radial-scheduler", "grpc"), ("radial-scheduler-workers", "workers"),
                            ("radial-scheduler-headless", "metrics")):
        service = _one(docs, "Service", name)
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert [(p["targetPort"], p["port"]) for p in service["spec"]["ports"]] == [(port_name, ports[port_name])]
    headless = _one(docs, "Service", "radial-scheduler-headless")
    assert scheduler["spec"]["serviceName"] == "radial-scheduler-headless"
    assert headless["spec"]["clusterIP"] == "None"
    _check_scrape_annotations(scheduler, listen["--metrics-listen"])


def _check_scrape_annotations(workload, metrics_port):
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


@_overlay_param()
def test_worker_flags_probes_and_drain(overlay):
    docs = _docs(overlay)
    worker = _one(docs, "Deployment", "radial-worker")
    spec = worker["spec"]["template"]["spec"]
    container = _container(worker)
    args = _args(docs, container)
    assert set(args) <= _flags_of("radial-worker"), set(args) - _flags_of("radial-worker")
    service = _one(docs, "Service", "radial-scheduler-workers")
    host, port = args["--scheduler"].rsplit(":", 1)
    assert host == service["metadata"]["name"] and int(port) == service["spec"]["ports"][0]["port"]
    scheduler = _container(_one(docs, "StatefulSet", "radial-scheduler"))
    assert int(port) == _port(_args(docs, scheduler)["--worker-listen"])
    assert args["--tls-ca"] == _mounts(container)["tls"]["mountPath"] + "/ca.crt", "workers verify the scheduler"
    assert _volumes(spec)["tls"]["secret"] == {"secretName": "radial-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    env = _env(docs, container)
    assert env["RADIAL_WORKER_TOKEN"] == ("secret", "radial-worker-token", "token"), "the worker token comes from a Secret"
    # Kubernetes kills the pod at the end of its grace period: the drain must fit inside it.
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > int(args["--drain-seconds"]) >= 600, (grace, args["--drain-seconds"])
    if overlay in GPU_OVERLAYS:
        assert args["--device"].startswith("cuda")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    else:
        assert args["--device"] == "cpu"
        assert not any("nvidia.com/gpu" in r for r in container["resources"].values()) and "tolerations" not in spec
    # Probes, on the metrics port (--metrics-listen, which --help says serves both): liveness is
    # /metrics answering, readiness /healthz (200 idle or busy, 503 loading, warming, draining;
    # tested against a real worker below).
    metrics_port = _port(args["--metrics-listen"])
    assert args["--metrics-listen"].startswith("0.0.0.0:")
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("metrics", metrics_port)]
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    usage = subprocess.run([_binary("radial-worker"), "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "/healthz" in usage and "/metrics" in usage
    _check_scrape_annotations(worker, metrics_port)
    assert worker["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 1}
    assert env["HOME"] == _mounts(container)["tmp"]["mountPath"] == "/tmp"
    if overlay == "cpu-demo":
        assert container["resources"]["requests"]["cpu"] == "1" and container["resources"]["requests"]["memory"] == "1Gi"
    # Autoscaled overlays leave replicas to the autoscaler.
    assert ("replicas" in worker["spec"]) == (overlay == "cpu-demo")


@_overlay_param()
def test_models_volume_export_job_and_workers_agree(overlay):
    docs = _docs(overlay)
    worker = _one(docs, "Deployment", "radial-worker")
    job = _one(docs, "Job", "radial-export-models")
    worker_spec, job_spec = worker["spec"]["template"]["spec"], job["spec"]["template"]["spec"]
    container, export = _container(worker), _container(job)
    wait = next(c for c in worker_spec["initContainers"] if c["name"] == "wait-for-bundle")
    bundle = _args(docs, container)["--bundle"]
    # One ConfigMap key names the bundle for the worker, its wait and the Job.
    refs = [next(e for e in c["env"] if e["name"] == "RADIAL_BUNDLE")["valueFrom"]["configMapKeyRef"]
            for c in (container, wait, export)]
    assert refs[0] == refs[1] == refs[2]
    assert container["args"][container["args"].index("--bundle") + 1] == "$(RADIAL_BUNDLE)"
    assert '"$RADIAL_BUNDLE/manifest.json"' in wait["command"][2]
    script = export["command"][2]
    assert 'radial-export $RADIAL_EXPORT_SOURCE --out "$RADIAL_BUNDLE"' in script
    assert '[ -f "$RADIAL_BUNDLE/manifest.json" ]' in script, "a bundle already there is kept"
    source = _env(docs, export)["RADIAL_EXPORT_SOURCE"]
    # The same claim: read-only in workers, read-write in the Job, the bundle under its mount.
    claim = _volumes(worker_spec)["models"]["persistentVolumeClaim"]
    assert claim["readOnly"] and _mounts(container)["models"]["readOnly"] and _mounts(wait)["models"]["readOnly"]
    assert _volumes(job_spec)["models"]["persistentVolumeClaim"]["claimName"] == claim["claimName"]
    assert not _mounts(export)["models"].get("readOnly")
    for c in (container, wait, export):
        assert bundle.startswith(_mounts(c)["models"]["mountPath"] + "/")
    pvc = _one(docs, "PersistentVolumeClaim", claim["claimName"])
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600 and job_spec["restartPolicy"] == "Never"
    assert job_spec["securityContext"]["fsGroup"] == job_spec["securityContext"]["runAsGroup"] == 65532
    assert _env(docs, export)["HOME"] == _mounts(export)["tmp"]["mountPath"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == ("1Gi" if overlay == "cpu-demo" else "200Gi")
    if overlay in GPU_OVERLAYS:
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "workers on many nodes read it"
        assert source.startswith("--from /checkpoints/")
        checkpoints = _volumes(job_spec)["checkpoints"]["persistentVolumeClaim"]
        assert checkpoints["readOnly"] and _mounts(export)["checkpoints"]["mountPath"] == "/checkpoints"
        _one(docs, "PersistentVolumeClaim", checkpoints["claimName"])
    else:
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and source == "--tiny"
        assert bundle.endswith("/wan2.1-tiny") and "checkpoints" not in _volumes(job_spec)


@_overlay_param()
def test_worker_disruption_budget(overlay):
    docs = _docs(overlay)
    budget = _one(docs, "PodDisruptionBudget", "radial-worker")
    worker = _one(docs, "Deployment", "radial-worker")
    assert budget["spec"]["selector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "a broken worker never blocks a node drain"
    assert not _find(docs, "PodDisruptionBudget", "radial-scheduler"), "one scheduler: a budget would block drains"


# ---------------------------------------------------------------------------------------------
# NetworkPolicies, evaluated


def _selects(selector, labels):
    if selector is None:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class _Pod:
    def __init__(self, namespace, labels, ports=None):
        self.namespace = namespace  # {"name": ..., "labels": {...}}
        self.labels = labels
        self.ports = ports or {}  # port name -> number


def _peer_matches(peer, pod, policy_namespace):
    if "ipBlock" in peer:
        return False  # no rule here names addresses; pods are matched by labels
    namespace_ok = (_selects(peer["namespaceSelector"], pod.namespace["labels"]) if "namespaceSelector" in peer
                    else pod.namespace["name"] == policy_namespace)
    pod_ok = _selects(peer["podSelector"], pod.labels) if "podSelector" in peer else True
    return namespace_ok and pod_ok


def _port_matches(rule_ports, port, protocol, target):
    if not rule_ports:
        return True
    for rule in rule_ports:
        number = rule.get("port")
        if isinstance(number, str):
            number = target.ports.get(number)
        if rule.get("protocol", "TCP") == protocol and (rule.get("port") is None or number == port):
            return True
    return False


def _allowed(policies, direction, subject, peer, port, protocol, target):
    """Whether NetworkPolicies let `subject` (the pod the policies select) have this connection:
    direction Ingress (from peer) or Egress (to peer); `target` is the pod that owns the port."""
    selecting = [p for p in policies if direction in p["spec"]["policyTypes"]
                 and p["metadata"]["namespace"] == subject.namespace["name"]
                 and _selects(p["spec"]["podSelector"], subject.labels)]
    if not selecting:
        return True
    key, side = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(side)
            if (not peers or any(_peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers)) and \
                    _port_matches(rule.get("ports"), port, protocol, target):
                return True
    return False


def _connects(policies, source, target, port, protocol="TCP"):
    return (_allowed(policies, "Egress", source, target, port, protocol, target)
            and _allowed(policies, "Ingress", target, source, port, protocol, target))


@_overlay_param()
def test_network_policies(overlay):
    docs = _docs(overlay)
    policies = _find(docs, "NetworkPolicy")
    radial = {"name": "radial", "labels": {"kubernetes.io/metadata.name": "radial",
                                           **_one(docs, "Namespace", "radial")["metadata"]["labels"]}}

    def namespace(name):
        return {"name": name, "labels": {"kubernetes.io/metadata.name": name}}

    def pod_of(kind, name):
        workload = _one(docs, kind, name)
        template = workload["spec"]["template"]
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        return _Pod(radial, template["metadata"]["labels"], ports)

    scheduler = pod_of("StatefulSet", "radial-scheduler")
    worker = pod_of("Deployment", "radial-worker")
    export = pod_of("Job", "radial-export-models")
    client = _Pod(namespace("apps"), {"radial-client": "true"})
    stranger = _Pod(namespace("apps"), {"app": "other"})
    stranger_here = _Pod(radial, {"app": "other"})
    prometheus = _Pod(namespace("monitoring"), {"app.kubernetes.io/name": "prometheus"})
    fake_prometheus = _Pod(namespace("apps"), {"app.kubernetes.io/name": "prometheus"})
    dns = _Pod(namespace("kube-system"), {"k8s-app": "kube-dns"}, {"dns": 53})
    internet = _Pod(namespace("elsewhere"), {})
    grpc, workers, health, metrics = (scheduler.ports[n] for n in ("grpc", "workers", "health", "metrics"))

    deny_all = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
                and "egress" not in p["spec"]]
    assert deny_all and set(deny_all[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}, "default deny"
    # Clients reach the client port only; workers the worker port only.
    assert _connects(policies, client, scheduler, grpc)
    for port in (workers, health, metrics):
        assert not _connects(policies, client, scheduler, port), port
    for source in (stranger, stranger_here, export):
        assert not _connects(policies, source, scheduler, grpc)
        assert not _connects(policies, source, scheduler, workers)
    assert _connects(policies, worker, scheduler, workers)
    assert not _connects(policies, worker, scheduler, grpc)
    assert _connects(policies, worker, dns, 53, "UDP") and _connects(policies, worker, dns, 53, "TCP")
    assert not _connects(policies, worker, internet, 443)
    # Prometheus in the monitoring namespace scrapes both, and nothing else does.
    for target in (scheduler, worker):
        assert _connects(policies, prometheus, target, metrics)
        assert not _connects(policies, fake_prometheus, target, metrics)
        assert not _connects(policies, stranger_here, target, metrics)
    for port in (grpc, workers):
        assert not _connects(policies, prometheus, scheduler, port)
    # The scheduler and the export Job dial nothing, nobody dials the Job.
    for source in (scheduler, export):
        for target in (dns, internet, worker):
            assert not _connects(policies, source, target, 53, "UDP") and not _connects(policies, source, target, 443)
    assert not _connects(policies, prometheus, export, metrics)
    # Kubelet's probes come from the node, which NetworkPolicy never restricts: every probe is
    # gRPC or HTTP on a container port, or exec.
    for _, template in _pod_templates(docs):
        for container in template["spec"]["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert set(container[probe]) & {"grpc", "httpGet", "exec"}, container["name"]


# ---------------------------------------------------------------------------------------------
# Monitoring


def _rule_files():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return [PROMETHEUS / name for name in config["rule_files"]]


def test_generated_monitoring_files_are_current():
    generate = K8S / "components" / "monitoring" / "generate.py"
    result = subprocess.run([sys.executable, str(generate), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"run {generate.relative_to(ROOT)} and commit its output: {result.stderr}"


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_monitoring_objects(overlay):
    docs = _docs(overlay)
    # The scheduler: one Service has the ServiceMonitor's port; the job label comes from the
    # Service's app.kubernetes.io/name and is the job the alerts read.
    monitor = _one(docs, "ServiceMonitor", "radial-scheduler")
    services = [s for s in _find(docs, "Service") if _selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    endpoint = monitor["spec"]["endpoints"][0]
    scraped = [s for s in services if any(p["name"] == endpoint["port"] for p in s["spec"]["ports"])]
    assert [s["metadata"]["name"] for s in scraped] == ["radial-scheduler-headless"]
    assert endpoint["path"] == "/metrics"
    jobs = {scraped[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]]}
    # The workers: pods of the Deployment, by their metrics port.
    pod_monitor = _one(docs, "PodMonitor", "radial-worker")
    worker = _one(docs, "Deployment", "radial-worker")
    template = worker["spec"]["template"]
    assert _selects(pod_monitor["spec"]["selector"], template["metadata"]["labels"])
    pod_endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    assert pod_endpoint["port"] in {p["name"] for p in _container(worker)["ports"]} and pod_endpoint["path"] == "/metrics"
    jobs.add(template["metadata"]["labels"][pod_monitor["spec"]["jobLabel"]])
    assert jobs == {"radial-scheduler", "radial-worker"}
    # Every job the rules and dashboard name is one of these.
    named = set()
    for path in _rule_files() + sorted(GRAFANA.glob("*.json")):
        named |= set(re.findall(r'job\s*=~?\s*\\?"([\w-]+)\\?"', path.read_text()))
    assert named and named <= jobs, named
    # The PrometheusRule is the rule files' groups, unchanged.
    rule = _one(docs, "PrometheusRule", "radial")
    groups = [group for path in _rule_files() for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups and groups
    # The dashboards: one ConfigMap for Grafana's sidecar, each deploy/grafana/*.json unchanged.
    dashboard = _one(docs, "ConfigMap", "radial-grafana-dashboard")
    assert dashboard["metadata"]["name"] == "radial-grafana-dashboard", "no hash suffix: replaced in place"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    sources = {p.name: p.read_text() for p in GRAFANA.glob("*.json")}
    assert sources and dashboard["data"] == sources


# ---------------------------------------------------------------------------------------------
# Autoscaling


def _keda_query(docs):
    scaled = _one(docs, "ScaledObject", "radial-worker")
    trigger = scaled["spec"]["triggers"][0]
    return scaled, trigger, trigger["metadata"]["query"]


def _adapter_rule():
    values = yaml.safe_load((K8S / "components" / "hpa" / "prometheus-adapter-values.yaml").read_text())
    [rule] = values["rules"]["external"]
    return rule


@_overlay_param()
def test_autoscalers(overlay):
    docs = _docs(overlay)
    worker = _one(docs, "Deployment", "radial-worker")
    scaled, hpas = _find(docs, "ScaledObject"), _find(docs, "HorizontalPodAutoscaler")
    assert len(scaled) + len(hpas) == (0 if overlay == "cpu-demo" else 1), "one autoscaler at most"
    if overlay == "cpu-demo":
        assert worker["spec"]["replicas"] == 1
        return
    if overlay == "gpu":
        scaled, trigger, query = _keda_query(docs)
        assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
        assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 8)
        assert scaled["spec"]["pollingInterval"] == 30
        assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
        assert " ".join(query.split()) in " ".join(_readme().replace("`", "").split()), "the query deploy/README.md shows"
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
        assert trigger["metadata"]["threshold"] == "1", "one worker per queued or running job"
        assert "radial_queue_depth" in query and "radial_workers" in query
        assert set(re.findall(r'namespace="([^"]+)"', query)) == {worker["metadata"]["namespace"]}
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    else:
        [hpa] = hpas
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": worker["metadata"]["name"]}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
        [metric] = hpa["spec"]["metrics"]
        assert metric["type"] == "External" and metric["external"]["target"]["type"] == "AverageValue"
        rule = _adapter_rule()
        assert metric["external"]["metric"]["name"] == rule["name"]["as"]
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
        # The adapter's query with the HPA's namespace filled in is the KEDA trigger's query.
        filled = rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="{hpa["metadata"]["namespace"]}"')
        assert filled == _keda_query(_docs("gpu"))[2]
        behavior = hpa["spec"]["behavior"]
    # Up fast, down slowly (a removed worker drains its job, a new one loads its model): the
    # numbers deploy/README.md gives.
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 0,
                                   "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 600,
                                     "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}


def test_autoscaling_query_on_prometheus(tmp_path):
    """The trigger's query on synthetic series (promtool): demand = queued + busy, only this
    namespace's scheduler counts, and 0 (not an empty result) when there are no series at all."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool is missing: run scripts/setup.sh (Debian's prometheus)")
    query = _keda_query(_docs("gpu"))[2]
    mine = 'namespace="radial",job="radial-scheduler"'
    other = 'namespace="staging",job="radial-scheduler"'
    busy_world = [
        {"series": f'radial_queue_depth{{{mine},priority_band="high"}}', "values": "2x5"},
        {"series": f'radial_queue_depth{{{mine},priority_band="normal"}}', "values": "3x5"},
        {"series": f'radial_queue_depth{{{mine},priority_band="low"}}', "values": "0x5"},
        {"series": f'radial_workers{{{mine},model="m",state="busy"}}', "values": "2x5"},
        {"series": f'radial_workers{{{mine},model="m",state="idle"}}', "values": "1x5"},
        {"series": f'radial_workers{{{mine},model="m",state="draining"}}', "values": "1x5"},
        {"series": f'radial_queue_depth{{{other},priority_band="normal"}}', "values": "50x5"},
        {"series": f'radial_workers{{{other},model="m",state="busy"}}', "values": "9x5"},
    ]
    idle_world = [{"series": f'radial_queue_depth{{{mine},priority_band="normal"}}', "values": "0x5"},
                  {"series": f'radial_workers{{{mine},model="m",state="idle"}}', "values": "3x5"}]
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": []}
    for series, expected in ((busy_world, 7), (idle_world, 0), ([], 0)):
        tests["tests"].append({"interval": "1m", "input_series": series, "promql_expr_test": [
            {"expr": query, "eval_time": "2m", "exp_samples": [{"labels": "{}", "value": expected}]}]})
    (tmp_path / "keda_test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool, "test", "rules", "keda_test.yaml"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Running the manifests' commands with the real binaries


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """make-secrets.sh's output: {secret name: {key: bytes}}, and its directory."""
    directory = tmp_path_factory.mktemp("secrets") / "out"
    result = subprocess.run([str(K8S / "make-secrets.sh"), str(directory), "radial"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = {}
    for doc in yaml.safe_load_all((directory / "secrets.yaml").read_text()):
        assert doc["metadata"]["namespace"] == "radial"
        found[doc["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in doc["data"].items()}
    return found, directory


def test_make_secrets_writes_what_the_manifests_mount(secrets, tmp_path):
    found, directory = secrets
    assert set(found) == {"radial-tls", "radial-tokens", "radial-worker-token"}
    assert set(found["radial-tls"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert set(found["radial-tokens"]) == {"tokens", "worker-tokens"}
    assert set(found["radial-worker-token"]) == {"token"}
    manifest = tmp_path / "secrets.yaml"
    manifest.write_text((directory / "secrets.yaml").read_text())
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSIONS[-1],
                             str(manifest)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    # Every Secret and key a pod names exists.
    for overlay in OVERLAYS:
        docs = _docs(overlay)
        for _, template in _pod_templates(docs):
            for volume in template["spec"].get("volumes", []):
                if "secret" in volume:
                    keys = [i["key"] for i in volume["secret"].get("items", [])]
                    assert set(keys) <= set(found[volume["secret"]["secretName"]]), volume
            for container in _all_containers(template["spec"]):
                for value in _env(docs, container).values():
                    if isinstance(value, tuple):
                        assert value[2] in found[value[1]], value
    # The certificate names both Services (short and qualified) and chains to the CA.
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(directory / "tls.crt")],
                          capture_output=True, text=True, check=True).stdout
    for name in ("radial-scheduler", "radial-scheduler-workers", "radial-scheduler.radial.svc",
                 "radial-scheduler-workers.radial.svc.cluster.local", "localhost"):
        assert f"DNS:{name}," in text + ",", text
    subprocess.run(["openssl", "verify", "-CAfile", str(directory / "ca.crt"), str(directory / "tls.crt")],
                   capture_output=True, check=True)


class _Sandbox:
    """A container of a rendered pod run here: its volumes as directories (Secrets written out),
    arguments and environment with mount paths and 0.0.0.0 ports mapped to local ones."""

    def __init__(self, root, docs, workload, container, secrets, claims):
        self.docs, self.container = docs, container
        spec = workload["spec"]["template"]["spec"]
        volumes = _volumes(spec)
        self.paths = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None or "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"] if volume else f"template-{mount['name']}"
                local = claims / claim
            else:
                local = root / container["name"] / mount["name"]
                if "secret" in volume:
                    data = secrets[volume["secret"]["secretName"]]
                    items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                    local.mkdir(parents=True, exist_ok=True)
                    for item in items:
                        (local / item["path"]).write_bytes(data[item["key"]])
            local.mkdir(parents=True, exist_ok=True)
            self.paths[mount["mountPath"]] = str(local)
        self.ports = {}
        self.env = {}
        for name, value in _env(docs, container).items():
            self.env[name] = secrets[value[1]][value[2]].decode() if isinstance(value, tuple) else self.map(value)
        self.args = [self.map(arg) for arg in _expand(container.get("args", []), _env(docs, container))]

    def map(self, value):
        for mount_path, local in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            if value == mount_path or value.startswith(mount_path + "/"):
                return local + value[len(mount_path):]
            value = value.replace(f" {mount_path}/", f" {local}/")
        match = re.fullmatch(r"0\.0\.0\.0:(\d+)", value)
        if match:
            port = int(match.group(1))
            self.ports.setdefault(port, _free_port())
            return f"0.0.0.0:{self.ports[port]}"
        return value

    def environment(self):
        return {**{k: v for k, v in os.environ.items() if not k.startswith("RADIAL_")}, **self.env}


class _Processes:
    """Processes this test started, each in its own process group, ended at teardown."""

    def __init__(self):
        self.started = []

    def start(self, args, log, env=None):
        process = subprocess.Popen([str(a) for a in args], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        self.started.append(process)
        return process

    def close(self):
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture
def processes():
    started = _Processes()
    yield started
    started.close()


def _wait_for(what, check, timeout, process=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {what}: {log.read_text() if log else ''}")
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}: {log.read_text()[-4000:] if log else ''}")


def _metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def _grpc_call(port, method, *, tls=None, token=None):
    """A unary call with an empty request; (status code, response bytes)."""
    import grpc

    target = f"127.0.0.1:{port}"
    if tls is None:
        channel = grpc.insecure_channel(target)
    else:
        ca, server_name = tls
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca),
                                      options=[("grpc.ssl_target_name_override", server_name)])
    with channel:
        call = channel.unary_unary(method)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            return grpc.StatusCode.OK, call(b"", timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            return error.code(), error.details()


def _start_scheduler(tmp_path, docs, secrets, processes):
    scheduler = _one(docs, "StatefulSet", "radial-scheduler")
    sandbox = _Sandbox(tmp_path / "scheduler", docs, scheduler, _container(scheduler), secrets, tmp_path / "claims")
    log = tmp_path / "scheduler.log"
    process = processes.start([_binary("radial-scheduler"), *sandbox.args], log, env=sandbox.environment())
    ports = {name: sandbox.ports[p["containerPort"]] for p in _container(scheduler)["ports"] for name in [p["name"]]}
    _wait_for("the scheduler's /metrics", lambda: "radial_queue_depth" in _metrics(ports["metrics"]), 30, process, log)
    return process, ports, log


@_overlay_param()
def test_scheduler_runs_with_the_manifest(overlay, secrets, tmp_path, processes):
    """The StatefulSet's arguments, with make-secrets.sh's Secrets: the scheduler starts, kubelet's
    gRPC probe gets SERVING on the plaintext health port, /metrics answers, the client port speaks
    TLS for the name radial-scheduler and wants a token, and SIGTERM ends it within the grace period."""
    import grpc

    found, directory = secrets
    docs = _docs(overlay)
    process, ports, log = _start_scheduler(tmp_path, docs, found, processes)
    health = "/grpc.health.v1.Health/Check"
    code, response = _grpc_call(ports["health"], health)
    assert code == grpc.StatusCode.OK and response == b"\x08\x01", (code, response)  # status: SERVING
    ca = found["radial-tls"]["ca.crt"]
    admin = (directory / "admin.token").read_text()
    list_models = "/radial.v1.VideoService/ListModels"
    metrics = _metrics(ports["metrics"])
    assert _grpc_call(ports["grpc"], list_models, tls=(ca, "radial-scheduler"), token=admin)[0] == grpc.StatusCode.OK
    assert _grpc_call(ports["grpc"], list_models, tls=(ca, "radial-scheduler"))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc_call(ports["grpc"], list_models, token=admin)[0] == grpc.StatusCode.UNAVAILABLE, "plaintext refused"
    grace = _one(docs, "StatefulSet", "radial-scheduler")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=grace) == 0, log.read_text()
    assert time.monotonic() - started < grace
    assert "jobs stay in" in log.read_text()
    # The queue depth has no model label (deploy/README.md: why several models scale together).
    labels = {frozenset(re.findall(r'(\w+)="', m)) for m in re.findall(r"^radial_queue_depth\{([^}]*)\}", metrics, re.M)}
    assert labels == {frozenset({"priority_band"})}, labels


def _in_image(path):
    """Where a path of the exporter's image (docker/Dockerfile's build stage: the checkout at
    /opt/radial, built into /opt/radial/build) is here."""
    build = Path(_binary("radial-worker")).resolve().parents[1]
    for prefix, local in (("/opt/radial/build/", build), ("/opt/radial/", ROOT)):
        if path.startswith(prefix):
            return str(local / path[len(prefix):])
    return path


def _probe(port, path, seen):
    """Kubelet's httpGet probe: passes on a status from 200 to 399."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            seen.append(response.status)
    except urllib.error.HTTPError as error:
        seen.append(error.code)
    except OSError:
        seen.append(None)
    return seen[-1] is not None and 200 <= seen[-1] < 400


def _exporter_env(env):
    """The export container's environment with its image's paths mapped here."""
    env = dict(env)
    image_path = [p for p in env["PATH"].split(":") if p.startswith("/opt/radial/")]
    assert image_path, env["PATH"]
    env["PATH"] = ":".join([_in_image(p) for p in image_path] + [os.environ["PATH"]])
    env["RADIAL_OPS_LIBRARY"] = _in_image(env["RADIAL_OPS_LIBRARY"])
    if not Path(env["RADIAL_OPS_LIBRARY"]).exists():
        pytest.skip(f"{env['RADIAL_OPS_LIBRARY']} is not built")
    return env


def test_demo_export_job_and_worker_run(secrets, tmp_path, processes):
    """cpu-demo end to end, here: the export Job's script writes the tiny bundle onto the models
    "volume" (and keeps it when run again), the worker's wait-for-bundle loop ends, the worker runs
    with the Deployment's arguments against the scheduler run with the StatefulSet's, connects with
    TLS (checking the name radial-scheduler-workers) and its token, passes the readiness and
    liveness probes as written (kubelet's httpGet: a status from 200 to 399 passes), radialctl gets
    a video through it, and it exits 0 on SIGTERM."""
    found, _ = secrets
    docs = _docs("cpu-demo")
    claims = tmp_path / "claims"
    job = _one(docs, "Job", "radial-export-models")
    export = _Sandbox(tmp_path / "job", docs, job, _container(job), found, claims)
    env = _exporter_env(export.environment())
    script = _container(job)["command"]
    for attempt in ("writes", "keeps"):
        result = subprocess.run(script, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        if attempt == "keeps":
            assert "is there already" in result.stdout
    bundle = Path(export.env["RADIAL_BUNDLE"])
    assert (bundle / "manifest.json").exists() and bundle.parent == claims / "radial-models"

    worker = _one(docs, "Deployment", "radial-worker")
    spec = worker["spec"]["template"]["spec"]
    wait = next(c for c in spec["initContainers"] if c["name"] == "wait-for-bundle")
    waiting = _Sandbox(tmp_path / "wait", docs, worker, wait, found, claims)
    assert subprocess.run(wait["command"], env=waiting.environment(), timeout=30).returncode == 0

    _, ports, scheduler_log = _start_scheduler(tmp_path, docs, found, processes)
    sandbox = _Sandbox(tmp_path / "worker", docs, worker, _container(worker), found, claims)
    args = sandbox.args
    host = args[args.index("--scheduler") + 1].rsplit(":", 1)[0]
    # No cluster DNS here: dial the scheduler's mapped worker port, checking the certificate for the
    # Service's name as the worker in the pod does.
    args[args.index("--scheduler") + 1] = f"127.0.0.1:{ports['workers']}"
    args += ["--tls-server-name", host]
    log = tmp_path / "worker.log"
    process = processes.start([_binary("radial-worker"), *args], log, env=sandbox.environment())
    metrics_port = sandbox.ports[_port(_args(docs, _container(worker))["--metrics-listen"])]
    probes = {name: _container(worker)[name]["httpGet"]["path"] for name in ("readinessProbe", "livenessProbe")}
    seen = []
    _wait_for("the worker's readiness probe", lambda: _probe(metrics_port, probes["readinessProbe"], seen), 120,
              process, log)
    assert set(seen) <= {200, 503, None}, seen  # None: not listening yet; 503: loading or warming up
    assert _probe(metrics_port, probes["livenessProbe"], [])
    assert "radial_worker_state" in _metrics(metrics_port)
    model = json.loads((bundle / "manifest.json").read_text())["name"]
    connected = f'radial_workers{{model="{model}",state="idle"}} 1'
    _wait_for("the scheduler to count the worker", lambda: connected in _metrics(ports["metrics"]), 60, None,
              scheduler_log)
    # A client as deploy/README.md has it (through kubectl port-forward: localhost, which the
    # certificate names too), with the user token: one job, end to end.
    radialctl = Path(_binary("radial-scheduler")).resolve().parents[1] / "client" / "radialctl"
    if radialctl.exists():
        user = (secrets[1] / "user.token").read_text()
        out = tmp_path / "fox.mp4"
        result = subprocess.run([radialctl, "--server", f"localhost:{ports['grpc']}", "--tls-ca",
                                 secrets[1] / "ca.crt", "--token", user, "generate", "a red fox", "--steps", "2",
                                 "--frames", "5", "-o", out], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr + log.read_text()[-3000:]
        assert out.read_bytes()[4:8] == b"ftyp"
        # SIGTERM while a job runs: the worker drains (not ready: /healthz 503), finishes the job and
        # exits 0 well inside the grace period.
        ctl = [radialctl, "--server", f"localhost:{ports['grpc']}", "--tls-ca", secrets[1] / "ca.crt", "--token", user]
        submitted = subprocess.run([*ctl, "submit", "a long one", "--steps", "40", "--frames", "17"],
                                   capture_output=True, text=True, timeout=60)
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.split()[-1]
        busy = f'radial_worker_state{{model="{model}",state="busy"}} 1'
        _wait_for("the worker to take the job", lambda: busy in _metrics(metrics_port), 60, process, log)
        process.send_signal(signal.SIGTERM)
        draining = []
        _wait_for("the worker to drain", lambda: not _probe(metrics_port, probes["readinessProbe"], draining)
                  and draining[-1] == 503, 30, process, log)
        grace = spec["terminationGracePeriodSeconds"]
        assert process.wait(timeout=min(grace, 300)) == 0, log.read_text()
        status = subprocess.run([*ctl, "status", job, "--json"], capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["state"].lower().endswith("succeeded"), status.stdout
        return
    grace = spec["terminationGracePeriodSeconds"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=min(grace, 60)) == 0, log.read_text()


# ---------------------------------------------------------------------------------------------
# deploy/README.md


def test_readme_names_what_exists():
    text = _readme()
    for path in sorted(set(re.findall(r"deploy/k8s/[\w./-]+", text))):
        assert (ROOT / path.rstrip(".")).exists(), path
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in text
    # Flags it names: the binaries', the exporter's, docker build's stages, kubectl's and checkov's.
    exporter = set(re.findall(r'add_argument\("(--[a-z-]+)"',
                              (ROOT / "worker" / "exporter" / "radial_export" / "__main__.py").read_text()))
    others = {"--help", "--target", "--cascade", "--framework", "--strict"}
    known = _flags_of("radial-scheduler") | _flags_of("radial-worker") | exporter | others
    for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", text):
        assert flag in known, flag
    stages = [name for name, _ in _dockerfile_stages()]
    for stage in re.findall(r"`--target (\w+)`", text):
        assert stage in stages, stage
    radialctl = Path(_binary("radial-scheduler")).resolve().parents[1] / "client" / "radialctl"
    usage = subprocess.run([radialctl, "--help"], capture_output=True, text=True, timeout=30).stdout
    lines = re.findall(r"^\s*(radialctl .*)$", text, re.M)
    assert lines
    for line in lines:
        for flag in re.findall(r"(--[a-z][a-z0-9-]*)", line):
            assert flag in usage, (flag, line)


# ---------------------------------------------------------------------------------------------
# docker/


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


def test_images_have_what_the_manifests_run():
    """What the pods run is in their images: the export Job's image is the build stage, the checkout at /opt/radial with its .venv (scripts/setup.sh)
    and build (scripts/build.sh), so the Job's PATH and RADIAL_OPS_LIBRARY name real files there;
    the scheduler and worker images run as the user the pods name."""
    stages = dict(_dockerfile_stages())
    build = stages["build"]
    assert "WORKDIR /opt/radial" in build and "COPY . ." in build
    assert any("scripts/setup.sh" in line for line in build) and any("scripts/build.sh" in line for line in build)
    for name in ("scheduler", "worker"):
        assert "USER 65532:65532" in stages[name], name
    for overlay in OVERLAYS:
        docs = _docs(overlay)
        for doc, template in _pod_templates(docs):
            assert template["spec"]["securityContext"]["runAsUser"] == 65532
        export = _container(_one(docs, "Job", "radial-export-models"))
        assert export["image"].startswith("radial-exporter:")
        env = _env(docs, export)
        for entry in env["PATH"].split(":"):
            if entry.startswith("/opt/radial/"):
                assert (Path(_in_image(entry)) / "radial-export").exists(), entry
        assert env["RADIAL_OPS_LIBRARY"] == "/opt/radial/build/kernels/libradial_ops.so"


def test_collect_libs_copies_what_the_scheduler_links(tmp_path):
    result = subprocess.run([str(ROOT / "docker" / "collect-libs.sh"), str(tmp_path),
                             _binary("radial-scheduler")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    copied = {p.name for p in tmp_path.iterdir()}
    assert any(name.startswith("libgrpc++.so") for name in copied), copied
    assert not any(name.startswith("libc.so") for name in copied)
