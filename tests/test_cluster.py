"""policyctl cluster on simulated swarms and on hostile input, as an engineer reads its output."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import PROJECT, commit_all, git

from policyctl.cli.main import main
from policyctl.cluster import cluster_logs
from policyctl.cluster.core import find_cycle
from policyctl.cluster.report import dumps
from policyctl.errors import ValidationError
from policyctl.model.cluster import ClusterReport
from policyctl.model.schema import schema_errors


@pytest.fixture(scope="module")
def bare_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy repository with main.rego only, so every fault of a world shows in the logs."""
    repo = tmp_path_factory.mktemp("bare")
    git(repo, "init", "-q", "-b", "main")
    (repo / "policies").mkdir()
    (repo / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
    commit_all(repo, "main only")
    return repo


def simulate(repo: Path, world: str, seed: int, out: Path, events: int = 6000) -> tuple[Path, dict[str, str]]:
    assert main(["simulate", "--world", world, "--events", str(events), "--seed", str(seed), "--repo", str(repo),
                 "-o", str(out)]) == 0
    truth = {}
    for line in out.with_name(out.name.replace(".jsonl", ".truth.jsonl")).read_text().splitlines():
        r = json.loads(line)
        truth[r["id"]] = "noise" if r["noise"] else r["fault"]
    return out, truth


@pytest.mark.parametrize("world", ["demo", "fleet"])
def test_each_fault_is_one_systemic_cluster_and_noise_stays_out(bare_policies: Path, tmp_path: Path, world: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    log, truth = simulate(bare_policies, world, 1, tmp_path / "events.jsonl")
    capsys.readouterr()
    doc, _ = cluster_logs([log], embedder="tfidf")
    assert not schema_errors("clusters", doc.to_dict())
    faults = {f for f in truth.values() if f not in (None, "noise")}
    systemic = doc.systemic
    assert len(systemic) == len(faults)
    for c in systemic:
        members = Counter(truth[m] for m in c.members)
        fault, n = members.most_common(1)[0]
        assert n == c.size, f"{c.title} mixes {dict(members)}"
        assert fault in faults
        faults.discard(fault)
        assert c.distinguishing or c.numeric or c.deadlock
    assert not faults
    noise_in_systemic = sum(1 for c in systemic for m in c.members if truth[m] == "noise")
    assert noise_in_systemic == 0 and doc.totals.rare_events + doc.totals.text_events > 0


def test_fingerprints_survive_a_new_day_of_logs(bare_policies: Path, tmp_path: Path) -> None:
    day1, _ = simulate(bare_policies, "demo", 1, tmp_path / "day1.jsonl")
    day2, _ = simulate(bare_policies, "demo", 2, tmp_path / "day2.jsonl")
    fp1 = {c.fingerprint for c in cluster_logs([day1], embedder="tfidf")[0].systemic}
    fp2 = {c.fingerprint for c in cluster_logs([day2], embedder="tfidf")[0].systemic}
    assert len(fp1) == 5 and fp1 == fp2


def test_deadlock_cluster_names_the_roles_and_resource_of_the_cycle(bare_policies: Path, tmp_path: Path) -> None:
    log, _ = simulate(bare_policies, "demo", 3, tmp_path / "events.jsonl")
    doc, _ = cluster_logs([log], embedder="tfidf")
    deadlocks = [c for c in doc.systemic if c.deadlock]
    assert len(deadlocks) == 1
    cycle = deadlocks[0].deadlock
    assert cycle is not None and cycle.roles == ("backup", "deploy") and cycle.resource_kinds == ("port",)
    assert deadlocks[0].title == "deadlock: backup ⇄ deploy over port"



def test_clusters_json_reads_back_as_the_same_records_and_bytes(bare_policies: Path, tmp_path: Path) -> None:
    log, _ = simulate(bare_policies, "demo", 3, tmp_path / "events.jsonl", events=3000)
    doc, _ = cluster_logs([log], embedder="tfidf")
    text = dumps(doc)
    again = ClusterReport.from_dict(json.loads(text), where="clusters.json")
    assert again == doc and dumps(again) == text
    assert any(c.deadlock for c in again.systemic) and any(c.numeric for c in again.systemic)
    # keys a newer writer adds are kept, in the document and in a cluster
    raw = json.loads(text)
    raw["generator"] = "policyctl 9"
    raw["clusters"][0]["owner"] = "team-a"
    kept = ClusterReport.from_dict(raw).to_dict()
    assert kept["generator"] == "policyctl 9" and kept["clusters"][0]["owner"] == "team-a"
    # a bad field is named, with its value
    raw["clusters"][1]["size"] = "many"
    with pytest.raises(ValidationError, match=r"clusters.json: clusters\[1\].size: expected integer, got string"):
        ClusterReport.from_dict(raw, where="clusters.json")

def test_find_cycle() -> None:
    assert find_cycle([{"agent": "a", "resource": "r", "held_by": "b"}, {"agent": "b", "resource": "s", "held_by": "a"}]) == ["a", "b"]
    assert find_cycle([{"agent": "a", "resource": "r", "held_by": "b"}, {"agent": "b", "resource": "s", "held_by": "c"}]) is None
    assert find_cycle([{"agent": "x", "held_by": "a"}, {"agent": "a", "held_by": "b"}, {"agent": "b", "held_by": "a"}]) == ["a", "b"]
    assert find_cycle([{"bogus": 1}, "junk"]) is None  # type: ignore[list-item]


def test_bad_input_is_counted_with_file_and_line_never_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"id": "e1", "input": {"kind": "action", "action": {"type": "x"}}, "outcome": {"status": "crash", "message": "boom 1"}}
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([
        json.dumps(good).encode(), b"garbage line", b"\x00\x01\x02\x03\xff" * 20, b'{"id": "t", "input": {"ki',
        b"\xff\xfe not utf8", b"[1, 2]", json.dumps({"id": "n"}).encode(), b"{" + b" " * (1 << 20) + b"}",
        json.dumps(good | {"id": "e2"}).encode(),
    ]) + b"\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    text = tmp_path / "app.log"
    text.write_bytes(b"2026-01-01 worker 7 failed: timeout after 30s\n\x00\x01\x02\x03\x04\x05\x06\x07\x08 junk\n"
                     b"caf\xe9 machine 9 failed: timeout after 45s\n" + b"x" * ((1 << 20) + 10) + b"\n")
    code = main(["cluster", str(events), str(empty), str(text), "--embedder", "tfidf", "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 0
    problems = {(Path(p["file"]).name, p["line"], p["code"]) for p in doc["problems"]}
    assert problems >= {("events.jsonl", 2, "bad_json"), ("events.jsonl", 3, "bad_json"), ("events.jsonl", 4, "bad_json"),
                        ("events.jsonl", 5, "bad_json"), ("events.jsonl", 6, "not_an_event"),
                        ("events.jsonl", 7, "not_an_event"), ("events.jsonl", 8, "line_too_long"),
                        ("app.log", 2, "binary")}
    warnings = {(Path(p["file"]).name, p["line"], p["code"]) for p in doc["warnings"]}
    assert ("empty.jsonl", None, "empty_file") in warnings
    assert ("app.log", 3, "bad_utf8") in warnings and ("app.log", 4, "line_truncated") in warnings
    assert doc["totals"]["failures"] == 5  # e1, e2, and three text lines
    assert main(["cluster", str(events), "--embedder", "tfidf", "--strict"]) == 1
    assert "events.jsonl:2: not JSON" in capsys.readouterr().err


def test_text_and_csv_logs(tmp_path: Path) -> None:
    lines = [f"worker-{i} failed: connection to 10.0.{i}.7:5432 refused after {i * 3}ms" for i in range(12)]
    lines += [f"disk /dev/sd{c} full on host-{c}" for c in "abcdefgh"]
    text = tmp_path / "app.log"
    text.write_text("\n".join(lines) + "\n")
    doc, _ = cluster_logs([text], embedder="tfidf", min_size=3)
    templates = sorted(t.template for c in doc.clusters for t in c.templates)
    assert len(templates) == 2 and any("refused" in t for t in templates)
    csv = tmp_path / "export.csv"
    csv.write_text("id,ts,status,protocol,message\n" + "\n".join(
        f"c{i},2026-01-01T00:00:{i:02d}Z,{'crash' if i % 2 else 'ok'},{'smb' if i % 2 else 'nfs'},\"write {i} failed\"" for i in range(20)) + "\n")
    doc, _ = cluster_logs([csv], embedder="tfidf", min_size=3)
    assert doc.totals.failures == 10 and doc.totals.successes == 10


def test_html_report_is_self_contained(bare_policies: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, _ = simulate(bare_policies, "demo", 1, tmp_path / "events.jsonl", events=3000)
    out, page = tmp_path / "clusters.json", tmp_path / "report.html"
    assert main(["cluster", str(log), "--embedder", "tfidf", "-o", str(out), "--html", str(page)]) == 0
    table = capsys.readouterr().out
    doc = json.loads(out.read_text())
    html = page.read_text()
    assert "<svg" in html and html.count("<circle") >= len(doc["clusters"])
    assert not re.search(r"(src|href)=\"https?:", html)
    for c in doc["clusters"]:
        if c["systemic"]:
            assert c["fingerprint"] in html and c["fingerprint"][:20] in table


@pytest.mark.slow
def test_real_minilm_embeddings_cluster_the_fleet_world(bare_policies: Path, tmp_path: Path) -> None:
    log, truth = simulate(bare_policies, "fleet", 4, tmp_path / "events.jsonl")
    doc, _ = cluster_logs([log], embedder="minilm")
    assert doc.embedder == "minilm"
    assert sorted(Counter(truth[m] for m in c.members).most_common(1)[0][0] for c in doc.systemic) == sorted(
        {f for f in truth.values() if f not in (None, "noise")})
