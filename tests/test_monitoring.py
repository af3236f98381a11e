"""Static checks of the monitoring stack (no Docker engine here): Prometheus finds every API replica, Grafana
is provisioned with it, and every dashboard query names only metrics and labels the service exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from deploy_helpers import API_PORT, DEPLOY, load_yaml
from prometheus_client.metrics import MetricWrapperBase

from service.metrics import Metrics

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "simgr.json"


def service_metric_names() -> dict[str, tuple[str, ...]]:
    """Every series name the service exposes (with _total/_bucket/... suffixes) -> its label names."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
    names: dict[str, tuple[str, ...]] = {}
    for collector in vars(Metrics()).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = tuple(collector._labelnames)  # no public accessor for a metric's label names
        for family in collector.describe():
            for suffix in suffixes[family.type]:
                names[family.name + suffix] = labels + (("le",) if suffix == "_bucket" else ())
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan", "le"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or strings."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    idents = re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {m.group(1) for m in idents if m.group(1).lower() not in PROMQL_WORDS}


def promql_grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr) for label in group.split(",")}


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend format) of every query of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"], t.get("legendFormat", "")) for p in dash["panels"] for t in p["targets"]]


def test_prometheus_discovers_every_api_replica(compose: dict) -> None:
    prom = load_yaml(DEPLOY / "prometheus.yml")
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "simgr"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "static_configs" not in job
    (sd,) = job["dns_sd_configs"]
    assert (sd["names"], sd["type"], sd["port"]) == (["api"], "A", API_PORT)
    assert "api" in compose["services"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_prometheus_config_passes_promtool() -> None:
    out = subprocess.run(["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (ds,) = load_yaml(DEPLOY / "grafana/provisioning/datasources/datasource.yml")["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    dash = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_promql_metric_extraction_known_answers() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, endpoint) (rate(simgr_request_duration_seconds_bucket{status=~"5.."}[$__rate_interval])))'
    assert promql_metrics(expr) == {"simgr_request_duration_seconds_bucket"}
    assert promql_grouping_labels(expr) == {"le", "endpoint"}
    assert promql_metrics("sum(rate(a_total[1m])) / sum(rate(b_count[1m])) > bool 0") == {"a_total", "b_count"}
    assert promql_metrics("simgr_model_info") == {"simgr_model_info"}


def test_dashboard_queries_use_only_service_metrics_and_labels() -> None:
    known = service_metric_names()
    assert {"simgr_requests_total", "simgr_request_duration_seconds_bucket", "simgr_batch_size_bucket"} <= set(known)
    for title, expr, legend in dashboard_targets():
        metrics = promql_metrics(expr)
        assert metrics, f"{title}: no metric in {expr}"
        assert metrics <= set(known), f"{title}: unknown metrics {metrics - set(known)}"
        labels = set().union(*(known[m] for m in metrics))
        assert promql_grouping_labels(expr) <= labels, f"{title}: grouping by a label the metrics lack: {expr}"
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            assert label in labels, f"{title}: legend {legend!r} names a label the metrics lack"


def test_dashboard_shows_the_required_signals() -> None:
    exprs = [expr for _, expr, _ in dashboard_targets()]
    joined = "\n".join(exprs)
    for phi in ("0.5", "0.99"):
        assert any(e.startswith(f"histogram_quantile({phi},") and "simgr_request_duration_seconds_bucket" in e
                   for e in exprs), phi
    assert re.search(r"rate\(simgr_requests_total\[", joined)
    assert "simgr_batch_size_bucket" in joined
    assert "simgr_queue_size" in joined
    assert "by (error_type) (rate(simgr_request_failures_total" in joined
    assert "by (reason) (rate(simgr_fallback_total" in joined
    # primary vs canary side by side: traffic, latency and fallbacks split by the version label
    assert "sum by (model_version) (rate(simgr_requests_total{" in joined
    assert "sum by (le, model_version) (rate(simgr_request_duration_seconds_bucket{" in joined
    assert "sum by (model_version) (rate(simgr_fallback_total[" in joined
    assert "sum by (model_version, role) (simgr_model_info)" in joined
