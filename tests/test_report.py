"""The HTML cluster report: a timeline per cluster with rule merges marked, hover texts, one-off failures, narrow screens."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import IDENTITY, git

from policyctl.cli.main import main
from policyctl.cluster.report import find_merges, render_html
from policyctl.model.cluster import ClusterReport
from policyctl.model.schema import schema_errors

TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
PASSWORD = "hunter2-Zq81"
START = "2026-03-01T00:00:00Z"


def event(i: int, minute: int, message: str, *, status: str = "error", type: str = "message",
          run: str = "r1") -> dict[str, Any]:
    return {"id": f"e{i}", "ts": f"2026-03-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
            "input": {"kind": "action", "agents": [{"id": f"a-{run}", "role": "assistant"}],
                      "action": {"type": type}, "context": {"run_id": run}},
            "outcome": {"status": status, "message": message}}


def day() -> list[dict[str, Any]]:
    """Ten hours of traffic: uploads failing all day, a TLS failure in the last hours only, a recurring
    wording no field explains, two one-off failures, and ok traffic of every type."""
    events = [event(i, 15 * i, f"upload of part {i} failed: quota exceeded on vol-{i % 4} (auth {TOKEN})",
                    type="upload", run=f"r{i % 6}") for i in range(40)]
    events += [event(100 + i, 480 + 4 * i, f"TLS handshake with web-{i} failed: certificate expired",
                     status="timeout", type="tls", run=f"r{i % 5}") for i in range(30)]
    events += [event(200 + i, 20 * i + 7, f"model answered in German although asked for English, turn {i}",
                     run=f"r{i % 7}") for i in range(12)]
    events += [event(300, 333, f"GPU Xid 79 on node-21: fallen off the bus; login password={PASSWORD}"),
               event(301, 555, "kernel: Out of memory: Killed process 59395 (python3)", status="crash")]
    events += [event(400 + i, 3 * i, f"step {i} done", status="ok", type=["message", "search", "upload", "tls"][i % 4],
                     run=f"r{i % 7}") for i in range(200)]
    return events


def commit_at(repo: Path, when: str, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, env=env)


def merge_rule(repo: Path, name: str, fingerprint: str, when: str) -> str:
    """A branch adding a rule that answers `fingerprint`, merged into main with a merge commit at `when`."""
    git(repo, "checkout", "-q", "-b", name, "main")
    (repo / "policies/rules").mkdir(parents=True, exist_ok=True)
    (repo / f"policies/rules/{name}.rego").write_text(
        f'# METADATA\n# title: "{name}: refuse it"\n# custom:\n#   cluster: {fingerprint}\n#   mode: enforce\n'
        f"package agentgov.rules.{name}\n\nimport rego.v1\n\ndecisions contains {{\"action\": \"deny\"}} if false\n")
    git(repo, "add", "-A")
    commit_at(repo, when, "commit", "-q", "-m", f"rules: {name}")
    git(repo, "checkout", "-q", "main")
    commit_at(repo, when, "merge", "-q", "--no-ff", "-m", f"Merge {name} (token {TOKEN})", name)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ClusterReport, str]:
    root = tmp_path_factory.mktemp("report")
    log = root / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in day()))
    out, page = root / "clusters.json", root / "clusters.html"
    assert main(["cluster", str(log), "--embedder", "tfidf", "-o", str(out), "--html", str(page)]) == 0
    return log, ClusterReport.from_dict(json.loads(out.read_text())), page.read_text()


def cluster_of(doc: ClusterReport, member: str) -> Any:
    return next(c for c in doc.clusters if member in c.members)


def card(page: str, fingerprint: str) -> str:
    """The HTML of one cluster's timeline card."""
    start = page.index(f"<article class=card id='c-{fingerprint}'>")
    return page[start:page.index("</article>", start)]


# --------------------------------------------------------------------------- timelines


def test_each_recurring_cluster_has_a_timeline_with_dated_axis_ticks(report: tuple[Path, ClusterReport, str]) -> None:
    _, doc, page = report
    upload, tls, german = cluster_of(doc, "e0"), cluster_of(doc, "e100"), cluster_of(doc, "e200")
    assert upload.systemic and tls.systemic and german.basis == "text"
    recurring = [c for c in doc.clusters if c.systemic or c.basis == "text"]
    assert page.count("<svg class=tl") == len(recurring) == 3
    for c in recurring:
        html = card(page, c.fingerprint)
        ticks = re.findall(r'<text class="tick x"[^>]*>([^<]+)</text>', html)
        assert len(ticks) >= 3 and all(re.fullmatch(r"\d\d:\d\d|\d\d [A-Z][a-z]{2}", t) for t in ticks), ticks
        assert "01 Mar" in ticks  # midnight is labelled with its date
        assert re.search(r'<text class="tick y"[^>]*>0</text>', html)
        assert "time (UTC)" in html and "failures per 15 min" in html
    # clusters.json: the same buckets for every cluster, their counts adding up to the cluster
    axes = {(c.timeline.start, c.timeline.step, len(c.timeline.counts)) for c in doc.clusters if c.timeline}
    assert axes == {(START, 900, 40)}
    assert all(c.timeline and sum(c.timeline.counts) == c.size for c in doc.clusters)
    # the TLS failure shows in the last hours only, the uploads all day
    assert tls.timeline and not any(tls.timeline.counts[:32]) and all(tls.timeline.counts[32:])
    assert upload.timeline and sum(1 for k in upload.timeline.counts if k) == 40
    assert not schema_errors("clusters", doc.to_dict())


def test_a_timeline_hover_names_the_bucket_its_count_and_the_templates(report: tuple[Path, ClusterReport, str]) -> None:
    _, doc, page = report
    tls = cluster_of(doc, "e100")
    titles = re.findall(r"<g><title>([^<]*)</title>", card(page, tls.fingerprint))
    assert len(titles) == 40
    template = tls.templates[0]
    busy = next(t for t in titles if t.startswith("Sun 01 Mar 09:00–09:15 UTC"))
    assert busy.split("&#10;")[0] == "Sun 01 Mar 09:00–09:15 UTC: 4 failures"
    assert f"{template.count} × {template.template}" in busy.replace("&lt;", "<").replace("&gt;", ">")
    assert titles[0].startswith("Sun 01 Mar 00:00–00:15 UTC: 0 failures")


def test_clusters_without_timestamps_render_and_keep_clusters_json_as_before(tmp_path: Path) -> None:
    events = [{k: v for k, v in e.items() if k != "ts"} for e in day()]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    out, page = tmp_path / "clusters.json", tmp_path / "clusters.html"
    assert main(["cluster", str(log), "--embedder", "tfidf", "-o", str(out), "--html", str(page)]) == 0
    raw = json.loads(out.read_text())
    assert raw["clusters"] and all("timeline" not in c for c in raw["clusters"])
    assert "its events carry no timestamps" in page.read_text()


# --------------------------------------------------------------------------- merges of rules answering a cluster


def test_the_merge_of_a_rule_answering_a_cluster_is_marked_on_its_timeline(
        report: tuple[Path, ClusterReport, str], tmp_path: Path) -> None:
    log, doc, _ = report
    upload, tls = cluster_of(doc, "e0"), cluster_of(doc, "e100")
    repo = tmp_path / "policy"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies/main.rego").write_text("package agentgov.main\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    commit_at(repo, "2026-02-01T00:00:00Z", "commit", "-q", "-m", "main only")
    inside = merge_rule(repo, "quota", upload.fingerprint, "2026-03-01T05:00:00Z")
    before = merge_rule(repo, "tls", tls.fingerprint, "2026-02-20T12:00:00Z")
    merges = find_merges(repo)
    assert {fp: [m.sha for m in ms] for fp, ms in merges.items()} == {upload.fingerprint: [inside],
                                                                     tls.fingerprint: [before]}
    page = tmp_path / "clusters.html"
    assert main(["cluster", str(log), "--embedder", "tfidf", "--repo", str(repo), "--html", str(page)]) == 0
    html = page.read_text()
    marked = card(html, upload.fingerprint)
    assert marked.count("class=merge") == 1 and f"merged {inside[:7]}" in marked
    # at 05:00 of a 10-hour axis: half way along the plot
    x = float(re.search(r'<g class=merge>.*?<line x1="([\d.]+)"', marked).group(1))  # type: ignore[union-attr]
    assert abs(x - (34 + (360 - 34 - 8) * 5 / 10)) < 1
    assert "policies/rules/quota.rego" in marked and "Merge quota" in marked
    outside = card(html, tls.fingerprint)
    assert "class=merge" not in outside and "rule merged before this window, 20 Feb 2026 12:00 UTC" in outside
    assert before[:7] in outside
    assert "class=merge" not in card(html, cluster_of(doc, "e200").fingerprint)
    assert TOKEN not in html  # commit subjects are redacted like log text


def test_without_a_repo_there_are_no_marks_and_repo_needs_html(report: tuple[Path, ClusterReport, str],
                                                                 tmp_path: Path) -> None:
    log, _, page = report
    assert "class=merge" not in page and "dashed line" not in page
    assert main(["cluster", str(log), "--embedder", "tfidf", "--repo", str(tmp_path)]) == 2
    assert main(["cluster", str(log), "--embedder", "tfidf", "--repo", str(tmp_path / "nowhere"),
                 "--html", str(tmp_path / "x.html")]) != 0
    assert not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------------- sizes, one-off failures, secrets, layout


def test_one_off_failures_are_listed_with_template_count_and_example(report: tuple[Path, ClusterReport, str]) -> None:
    _, doc, page = report
    rare = page[page.index("<h2 id=rare>"):]
    gpu, oom = cluster_of(doc, "e300"), cluster_of(doc, "e301")
    assert gpu.basis == oom.basis == "rare"
    assert "2 failures in 2 groups too small to recur" in rare
    for c, example in ((gpu, "GPU Xid 79 on node-21: fallen off the bus"), (oom, "Killed process 59395 (python3)")):
        row = next(r for r in rare.split("<tr>") if example in r)
        assert c.templates[0].template.replace("<", "&lt;").replace(">", "&gt;")[:40] in row
        assert "data-label='events'>1</td>" in row
    assert "one-off failures (2 kinds)" in page  # and their bar among the cluster sizes


def test_the_sizes_chart_explains_itself(report: tuple[Path, ClusterReport, str]) -> None:
    _, doc, page = report
    assert "Each bar is a cluster; its length is its failures, its colours their outcome status." in page
    # the map, folded away under the sizes: named axes, a sentence on what distance means, a hover per template
    plane = page[page.index("<details class=map>"):page.index("</details>")]
    assert "← main direction of difference →" in plane and "← second direction →" in plane
    assert "close together have messages and failing traffic that look alike" in plane
    assert plane.count("<circle") >= len(doc.clusters)  # every cluster has a template or more
    upload = cluster_of(doc, "e0")
    assert re.search(r"<title>[^<]*upload\b[^<]*&#10;\d+ failures? in this template "
                     rf"\({upload.size} in the cluster\)</title>", plane)
    for c in doc.clusters:
        if c.systemic:
            assert f"<a href='#c-{c.fingerprint}'>" in page
    assert "title='timeout: 30'" in page and re.search(r"class=key><span class=sw[^>]*></span>timeout", page)


def test_no_secret_from_the_logs_reaches_the_report(report: tuple[Path, ClusterReport, str], tmp_path: Path) -> None:
    log, doc, page = report
    assert TOKEN in log.read_text() and PASSWORD in log.read_text()
    assert TOKEN not in page and PASSWORD not in page
    assert "ghp_" not in page and "hunter2" not in page
    assert any(TOKEN in str(e.get("message")) for c in doc.clusters for e in c.examples)  # clusters.json keeps them


def test_the_page_reflows_on_a_phone(report: tuple[Path, ClusterReport, str]) -> None:
    _, _, page = report
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    media = page[page.index("@media (max-width: 640px)"):page.index("</style>")]
    assert ".reflow td::before { content: attr(data-label)" in media and ".reflow thead { display: none; }" in media
    assert ".scroll { overflow-x: auto;" in page
    assert "minmax(min(100%, 360px), 1fr)" in page  # timelines: as many columns as fit, one on a phone
    assert "svg.tl { width: 100%; height: auto;" in page and '<svg class=tl viewBox="0 0 360 150"' in page
    assert not re.search(r"<(?:script|link|img)\b|https?://", page)  # one file: nothing fetched from elsewhere


def test_a_report_without_map_points_has_no_map(report: tuple[Path, ClusterReport, str]) -> None:
    _, doc, page = report
    bare = render_html(doc)
    assert "<details class=map>" in page and "<details class=map>" not in bare and "<svg class=tl" in bare
