"""Static checks of the deployment files (no Docker engine here): compose, the Dockerfile, .env.example and the
shell scripts (tests/test_monitoring.py: Prometheus and Grafana). deploy/smoke.sh runs the same stack for real,
without Docker."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deploy_helpers import API_PORT, DEPLOY, ROOT, load_yaml
from packaging.specifiers import SpecifierSet

from service.settings import Settings


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())  # stdlib from Python 3.11 (the image's)


def interpolation_default(value: str) -> str:
    """'${X:-d}' -> 'd'; a plain value is returned as is."""
    m = re.fullmatch(r"\$\{\w+:-([^}]*)\}", str(value))
    return m.group(1) if m else str(value)


# ---- docker-compose.yml ----------------------------------------------------------------------


def test_compose_has_the_five_services_with_healthy_ordering(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"api", "lb", "redis", "prometheus", "grafana"}
    api = services["api"]
    assert api["build"]["context"] == "."
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("api", "redis"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        assert len(test) > 1
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert f":{API_PORT}/" in " ".join(api["healthcheck"]["test"])
    published = {name: [str(p).rsplit(":", 1)[1] for p in s["ports"]] for name, s in services.items() if "ports" in s}
    # redis stays internal; the api publishes no host port, so `--scale api=N` cannot collide on one
    assert published == {"lb": ["8080"], "prometheus": ["9090"], "grafana": ["3000"]}  # container ports
    assert api["expose"] == [str(API_PORT)]
    assert "container_name" not in api  # a fixed name would also stop --scale


def test_compose_mounts_the_publish_root_read_only_and_declares_volumes(compose: dict) -> None:
    services = compose["services"]
    (root,) = [v for v in services["api"]["volumes"] if isinstance(v, dict) and v["target"] == "/srv/simgr"]
    assert root["type"] == "bind"
    assert root["read_only"] is True
    assert root["source"] == "${SIMGR_ROOT_HOST:-./simgr-root}"
    assert services["api"]["environment"]["SIMGR_ROOT"] == "/srv/simgr"
    assert services["api"]["command"] == ["simgr", "serve"]  # no --artifacts flag overriding the root

    named: set[str] = set()
    binds: list[tuple[str, list[str]]] = []
    for service in services.values():
        for v in service.get("volumes", []):
            if isinstance(v, dict):
                continue
            source, _target, *mode = v.split(":")
            if source.startswith("."):
                binds.append((source, mode))
            else:
                named.add(source)
    assert named == set(compose["volumes"]) == {"redis-data", "prometheus-data", "grafana-data"}
    assert "redis-data:/data" in services["redis"]["volumes"]
    for source, mode in binds:  # config mounts: exist in the repo, read-only
        assert (ROOT / source).exists(), source
        assert mode == ["ro"], source


def test_compose_redis_uses_aof_and_api_points_at_it(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert compose["services"]["api"]["environment"]["SIMGR_REDIS_URL"].startswith("redis://redis:6379/")


def test_compose_env_defaults_are_the_service_defaults(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose["services"]["api"]["environment"]
    fixed = {"SIMGR_ROOT", "SIMGR_HOST", "SIMGR_PORT", "SIMGR_REDIS_URL"}  # set on purpose for the container
    assert env["SIMGR_HOST"] == "0.0.0.0"
    assert int(env["SIMGR_PORT"]) == API_PORT
    assert set(env) <= {f"SIMGR_{name.upper()}" for name in Settings.model_fields}
    for key in list(env):
        if key.startswith("SIMGR_"):
            monkeypatch.delenv(key, raising=False)
    expected = Settings().model_dump()
    for key, value in env.items():
        if key not in fixed:
            monkeypatch.setenv(key, interpolation_default(value))
    assert Settings().model_dump() == expected


def test_compose_load_balancer_fronts_every_replica(compose: dict) -> None:
    lb = compose["services"]["lb"]
    image, tag = lb["image"].split(":")
    assert image == "nginx"
    assert tuple(int(x) for x in tag.split("-")[0].split(".")) >= (1, 27)  # `server ... resolve` needs 1.27.3+
    assert lb["ports"] == ["${SIMGR_API_PORT:-8000}:8080"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert re.search(r"server api:8000 resolve", conf)
    assert "resolver 127.0.0.11" in conf
    assert "include /etc/nginx/simgr-locations.conf;" in conf
    assert "listen 8080;" in conf
    mounts = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    assert mounts["/etc/nginx/simgr-locations.conf"] == "./deploy/nginx/simgr-locations.conf"
    locations = (DEPLOY / "nginx" / "simgr-locations.conf").read_text()
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in locations


# ---- prometheus + grafana ----------------------------------------------------------------------



# ---- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching .dockerignore pattern wins; '!' re-includes."""
    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or any(fnmatch.fnmatch(part, pattern) for part in path.split("/")):
            ignored = not negate
    return ignored


def test_dockerfile_is_multistage_nonroot_with_healthcheck() -> None:
    ins = dockerfile_instructions()
    froms = [arg for op, arg in ins if op == "FROM"]
    assert len(froms) >= 2
    assert froms[0] == "${BASE_IMAGE} AS builder"
    assert froms[-1].startswith("${BASE_IMAGE} AS ")
    args = dict(a.split("=", 1) for op, a in ins if op == "ARG" and "=" in a)
    assert args["BASE_IMAGE"] == "python:3.11-slim"  # the CUDA build swaps it (see the Dockerfile header)
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert args["EXTRAS"] == '""'
    torch_spec = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert SpecifierSet(torch_spec.removeprefix("torch")).contains(args["TORCH_VERSION"])
    assert "gpu" in pyproject()["project"]["optional-dependencies"]
    runtime = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime
    users = [a for op, a in runtime if op == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    (health,) = [a for op, a in runtime if op == "HEALTHCHECK"]
    assert "/healthz" in health
    assert f":{API_PORT}/" in health
    assert "urllib" in health
    assert ("EXPOSE", str(API_PORT)) in runtime
    cmd = json.loads(next(a for op, a in runtime if op == "CMD"))
    assert cmd[:4] == ["simgr", "serve", "--artifacts", "/artifacts"]


def test_dockerfile_preloads_the_tcmalloc_it_installs() -> None:
    runtime = dockerfile_instructions()
    runtime = runtime[max(i for i, (op, _) in enumerate(runtime) if op == "FROM"):]
    env = dict(kv.split("=", 1) for op, a in runtime if op == "ENV" for kv in shlex.split(a))
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4"
    (install,) = [a for op, a in runtime if op == "RUN" and "libtcmalloc" in a]
    for package in ("libtcmalloc-minimal4", "libtcmalloc-minimal4t64"):  # Debian's name, Ubuntu 24.04's
        assert re.search(rf"\b{package}\b", install)
    assert "apt-get install" in install
    assert f"ctypes.CDLL('{env['LD_PRELOAD']}')" in install  # the build fails if the preload would not load
    assert install.index("apt-get install") < install.index("ctypes.CDLL") < install.index("useradd")


def test_dockerfile_copies_every_package_and_the_context_has_them() -> None:
    sources = [s for op, a in dockerfile_instructions() if op == "COPY" and not a.startswith("--from")
               for s in a.split()[:-1]]
    packages = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") + "/" for p in packages} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile COPY {source}: missing from the repo"
        assert not dockerignored(source.rstrip("/")), f"Dockerfile COPY {source}: excluded by .dockerignore"
    for heavy in ("artifacts", ".venv", "data", "runs", "tests", ".git", "model/__pycache__"):
        assert dockerignored(heavy), heavy


# ---- .env.example + smoke.sh ------------------------------------------------------------------------


def test_env_example_lists_every_setting_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        m = re.fullmatch(r"(# )?(SIMGR_\w+)=(.*)", line)
        if m and m.group(1):
            commented.add(m.group(2))
        elif m:
            active[m.group(2)] = m.group(3)
    settings_keys = {f"SIMGR_{name.upper()}" for name in Settings.model_fields}
    assert settings_keys <= set(active) | commented, settings_keys - set(active) - commented
    for key in settings_keys:
        monkeypatch.delenv(key, raising=False)
    expected = Settings().model_dump()
    for key, value in active.items():
        monkeypatch.setenv(key, value)
    assert Settings().model_dump() == expected
    compose_vars = set(re.findall(r"\$\{(\w+)", json.dumps(load_yaml(ROOT / "docker-compose.yml"))))
    assert compose_vars <= set(active) | commented | {"GRAFANA_ADMIN_USER", "GRAFANA_ADMIN_PASSWORD"}


def test_smoke_script_parses_and_answers_help() -> None:
    script = DEPLOY / "smoke.sh"
    assert script.stat().st_mode & 0o111, "deploy/smoke.sh is not executable"
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "--artifacts DIR" in out.stdout
    out = subprocess.run(["bash", str(script), "--no-such-flag"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "unknown argument" in out.stderr
    driver = [sys.executable, str(DEPLOY / "smoke_driver.py")]
    ports = subprocess.run([*driver, "free-ports", "3"], capture_output=True, text=True, check=True).stdout.split()
    assert len(set(ports)) == 3
    assert all(1024 <= int(p) < 65536 for p in ports)
    out = subprocess.run([*driver, "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "smoke: FAIL: usage" in out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", sorted([*DEPLOY.glob("*.sh"), *(ROOT / "scripts").glob("*.sh")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    out = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
