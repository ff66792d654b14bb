"""/metrics as Prometheus reads it (prometheus_client's own parsers) and the bearer scheme in /openapi.json.

A real `policyctl gateway serve`: the families must have their types (counters with
`_total`, gauges, histograms with buckets, the process collector), and no label may carry
free text such as a commit subject or an error message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import commit_all, write
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from test_gateway import BROKEN_RULE, CSV_SMB, PARQUET_SMB, Served, route_to

SUBJECT = "route parquet to nfs: a subject with spaces"
BROKEN_SUBJECT = "a rule that does not compile, said in many words"


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_have_their_types_and_no_free_text_labels(policy_repo: Path, tmp_path: Path,
                                                         serve: Callable[..., Served]) -> None:  # noqa: F811
    token = "metrics-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)
    gw = serve(policy_repo, "--token-file", str(tmp_path / "token"), "--poll", "600", "--workers", "1",
               "--log-dir", str(tmp_path / "log"), token=token)
    route_to(policy_repo, "nfs")
    served = commit_all(policy_repo, SUBJECT)
    gw.serving(served)
    write(policy_repo, "policies/rules/broken.rego", BROKEN_RULE)
    broken = commit_all(policy_repo, BROKEN_SUBJECT)
    gw.wait_until(lambda: (gw.status().get("last_error") or {}).get("revision") == broken, "the failure reported")
    gw.decide(PARQUET_SMB)
    gw.decide(CSV_SMB)

    response = gw.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = families(response.text)

    decisions = found["policyctl_gateway_decisions"]
    assert decisions.type == "counter"
    assert {s.name for s in decisions.samples} == {"policyctl_gateway_decisions_total"}
    assert sum(s.value for s in decisions.samples) == 2
    assert {(s.labels["action"], s.labels["source"]) for s in decisions.samples} == {("route", "policy"),
                                                                                    ("allow", "default")}
    assert found["policyctl_gateway_reloads"].type == "counter"
    assert {s.labels["result"]: s.value for s in found["policyctl_gateway_reloads"].samples}["failed"] == 1

    for name, value in (("policyctl_gateway_ready", 1), ("policyctl_gateway_degraded", 1),
                        ("policyctl_gateway_revisions_behind", 1), ("policyctl_gateway_workers_ready", 1)):
        assert found[name].type == "gauge", name
        assert [s.value for s in found[name].samples] == [value], name

    latency = found["policyctl_gateway_decision_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")]
    assert len(buckets) > 5 and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 2
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert {s.name: s.value for s in latency.samples if not s.name.endswith("_bucket")}[
        "policyctl_gateway_decision_duration_seconds_count"] == 2
    assert found["policyctl_gateway_commit_to_serving_seconds"].type == "histogram"

    assert found["process_resident_memory_bytes"].samples[0].value > 1 << 20
    assert found["process_cpu_seconds"].type == "counter" and found["process_open_fds"].samples[0].value > 0

    # Ids and codes only: the subjects and the compile error's message stay in /v1/status.
    revision = found["policyctl_gateway_revision_info"].samples
    assert [s.labels for s in revision] == [{"revision": served}]
    failure = found["policyctl_gateway_last_reload_failure_timestamp_seconds"].samples
    assert [s.labels for s in failure] == [{"revision": broken, "code": "rego_compile_error"}]
    values = [v for f in found.values() for s in f.samples for k, v in s.labels.items() if k != "le"]
    assert values and not [v for v in values if " " in v]
    assert SUBJECT not in response.text and BROKEN_SUBJECT not in response.text

    # Prometheus asks for OpenMetrics first; the same registry answers it.
    response = gw.http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    om = {f.name: f for f in openmetrics.text_string_to_metric_families(response.text)}
    assert om["policyctl_gateway_decisions"].type == "counter"
    assert om["policyctl_gateway_revision"].type == "info"

    openapi = gw.http.get("/openapi.json").json()
    assert openapi["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert openapi["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method in (("/v1/decide", "post"), ("/v1/status", "get"), ("/metrics", "get")):
        assert openapi["paths"][path][method]["security"] == [{"bearer": []}], path
    assert "security" not in openapi["paths"]["/healthz"]["get"]
    assert gw.stop() == 0


def test_without_a_token_the_document_declares_no_security(policy_repo: Path,
                                                           serve: Callable[..., Served]) -> None:  # noqa: F811
    gw = serve(policy_repo, "--workers", "1")
    openapi = gw.http.get("/openapi.json").json()
    assert "securitySchemes" not in openapi.get("components", {})
    assert not any("security" in op for ops in openapi["paths"].values() for op in ops.values())
    assert "loopback only" in openapi["info"]["description"]
    assert gw.stop() == 0
