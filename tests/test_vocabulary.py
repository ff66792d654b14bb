"""What may be changed, declared: policyctl.toml's vocabulary, routes only over it, the check that holds it,
numeric bounds rounded to cover, and a drafter that searches before it gives up."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, commit_all, git, write
from hypothesis import given, settings
from hypothesis import strategies as st

from policyctl.cli.main import main
from policyctl.cluster import cluster_logs
from policyctl.draft import run_drafts
from policyctl.draft.bounds import nice_threshold
from policyctl.errors import ValidationError
from policyctl.model.config import DEFAULT_CONFIG_TEXT, parse_config
from policyctl.model.region import Region, region_of_cluster
from policyctl.repo import snapshot

ROUTE_RULE = """# METADATA
# title: route region
# custom:
#   mode: enforce
{drafter}package agentgov.rules.r

import rego.v1

decisions contains {{
\t"id": "route_r",
\t"action": "route",
\t"params": {params},
\t"message": "m",
}} if {{
\tinput.kind == "action"
\tinput.action.type == "file_share"
\tinput.action.protocol == "smb"
}}
"""


def test_the_default_config_parses_and_declares_nothing() -> None:
    config = parse_config(DEFAULT_CONFIG_TEXT)
    assert config.present and not config.vocabulary.declared
    assert config.budgets.max_collateral_pct == 0.5 and config.budgets.override_horizon_days == 30


@pytest.mark.parametrize(("text", "where"), [
    ('[vocabulary.file_share.alternatives]\n"protocol" = ["smb", "sftp"]', "vocabulary.file_share.alternatives"),
    ('[vocabulary.file_share.alternatives]\n"action.protocol" = ["smb"]', "action.protocol: needs at least 2"),
    ('[budgets]\nmax_collateral_pct = "half"', "budgets.max_collateral_pct"),
    ("[logs]\nsourcez = []", "unknown field"),
    ("[budgets\n", "not valid TOML"),
])
def test_a_bad_config_names_the_file_and_field(text: str, where: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_config(text)
    assert str(err.value).startswith("policyctl.toml: ") and where in str(err.value)


def test_vocabulary_allows_only_declared_fields_and_values() -> None:
    v = parse_config((PROJECT / "policyctl.toml").read_text()).vocabulary
    assert v.allows("file_share", "action.protocol", "sftp")
    assert not v.allows("file_share", "action.protocol", "ftp")
    assert not v.allows("file_share", "action.file_type", "csv")  # intent
    assert not v.allows("db_query", "action.protocol", "sftp")  # not declared for that type


@pytest.mark.parametrize(("drafted", "params", "severity"), [
    (True, '{"action": {"protocol": "sftp"}}', None),
    (True, '{"resource": {"id": "fs-9"}}', "error"),
    (False, '{"resource": {"id": "fs-9"}}', "warning"),
    (True, '{"action": {"protocol": "ftp"}}', "error"),
    (True, '{"action": {"protocol": input.context.fallback}}', None),  # computed value, declared field
    (True, '{"resource": {"id": input.context.fallback}}', "error"),  # computed value, intent field
])
def test_check_flags_a_route_that_rewrites_intent(policy_repo: Path, capsys: pytest.CaptureFixture[str],
                                                  drafted: bool, params: str, severity: str | None) -> None:
    write(policy_repo, "policies/rules/r.rego",
          ROUTE_RULE.format(drafter="#   drafter: induce\n" if drafted else "", params=params))
    commit_all(policy_repo, "a route rule")
    code = main(["check", "--repo", str(policy_repo), "--ref", "HEAD", "--json"])
    doc = json.loads(capsys.readouterr().out)
    found = [p for p in doc["problems"] if p["code"] == "route_rewrites_intent"]
    if severity is None:
        assert not found and code == 0
    else:
        assert found and found[0]["severity"] == severity and found[0]["file"] == "policies/rules/r.rego"
        assert found[0]["line"] == (10 if drafted else 9) and "vocabulary" in found[0]["message"]  # the decisions line
        assert code == (1 if severity == "error" else 0)


def test_check_refuses_a_broken_config(policy_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "policyctl.toml", "[vocabulary.file_share.alternatives]\n\"action.protocol\" = \"smb\"\n")
    commit_all(policy_repo, "bad config")
    assert main(["check", "--repo", str(policy_repo), "--ref", "HEAD"]) == 1
    assert "policyctl.toml: error: config: vocabulary.file_share.alternatives.action.protocol: expected array" in (
        capsys.readouterr().err)


# ---------------------------------------------------------------------- bounds


def test_bounds_round_toward_covering_the_failures() -> None:
    # the oversize fault is at 2 GiB: data puts the bound between an ok at 2,147,345,741 and a failure at 2,148,121,175
    assert nice_threshold(2.15e9, [2147345741], [2148121175]) == 2**31
    assert nice_threshold(2.15e9, [1.9e9], [2.16e9]) == 2e9  # the round number nearest the ok side
    assert nice_threshold(8.1e6, [7.6e6], [8.05e6]) == 8e6
    # failures below the bound (x <= t): the largest round number in the gap
    assert nice_threshold(100, [80], [120], failures_above=False) == 100
    assert nice_threshold(100, [99], [100], failures_above=False) == 99


@settings(max_examples=300, deadline=None)
@given(st.floats(-1e12, 1e12), st.floats(1e-6, 1e11), st.booleans())
def test_a_rounded_bound_never_crosses_the_data(lo: float, width: float, above: bool) -> None:
    hi = lo + width
    if not hi > lo or not math.isfinite(hi):
        return
    t = nice_threshold((lo + hi) / 2, [lo], [hi], failures_above=above)
    assert lo <= t < hi


# ---------------------------------------------------------------------- drafting


def _world(root: Path, *, vocabulary: bool, world: str = "demo", events: int = 6000, seed: int = 3) -> dict[str, Any]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    write(repo, "policies/main.rego", (PROJECT / "policies/main.rego").read_text())
    if vocabulary:
        write(repo, "policyctl.toml", (PROJECT / "policyctl.toml").read_text())
    commit_all(repo, "main only")
    log = root / "events.jsonl"
    assert main(["simulate", "--world", world, "--events", str(events), "--seed", str(seed), "--repo", str(repo),
                 "-q", "-o", str(log)]) == 0
    clusters, _ = cluster_logs([log], embedder="tfidf")
    return {"repo": repo, "log": log, "clusters": clusters}


def test_without_a_vocabulary_nothing_is_routed_and_the_draft_says_why(tmp_path: Path) -> None:
    w = _world(tmp_path, vocabulary=False)
    run = run_drafts(w["clusters"], [w["log"]], snapshot(w["repo"], "main"))
    assert run.verified and all(d.remedy.action != "route" for d in run.drafts)
    parquet = next(d for d in run.verified if "parquet" in d.fingerprint)
    assert parquet.remedy.action == "deny" and "declares no alternatives" in parquet.remedy.why


def test_routes_stay_within_the_declared_vocabulary(tmp_path: Path) -> None:
    w = _world(tmp_path, vocabulary=True)
    run = run_drafts(w["clusters"], [w["log"]], snapshot(w["repo"], "main"))
    vocab = snapshot(w["repo"], "main").config.vocabulary
    routes = [d for d in run.verified if d.remedy.action == "route"]
    assert routes
    for d in routes:
        (path, value), = [(d.remedy.evidence["field"], d.remedy.evidence["to"])]
        assert vocab.allows("file_share", path, value)
    # every drafted module states its failure region, and the region is the cluster's, not the rule's
    for d in run.verified:
        assert "#   region:" in d.module_text and d.region == region_of_cluster(d.cluster)


def test_a_failing_draft_is_followed_by_narrower_candidates_and_the_best_verified_wins(tmp_path: Path) -> None:
    """A deadlock between deploy and backup drafted as "any conflict on port 22 with a deploy agent"
    changes every port-22 conflict deploy takes part in; the drafter must try the rule that needs both roles."""
    from policyctl.draft import InduceDrafter
    from policyctl.draft.data import load_evidence
    from policyctl.draft.induce import alternatives, make_draft
    from policyctl.model.draft import Condition

    w = _world(tmp_path, vocabulary=True, events=8000)
    cluster = next(c for c in w["clusters"].clusters if c.deadlock)
    (ev,), _ = load_evidence([cluster], [w["log"]])
    too_wide = [[Condition("kind", "==", "conflict"), Condition("resource.kind", "==", "port"),
                 Condition("resource.port", "==", 22), Condition("role", "has_role", "deploy")]]
    offered = alternatives(ev, too_wide)
    labels = [label for label, _ in offered]
    assert any("backup" in label and "deploy" in label for label in labels), labels
    narrower = next(b for label, b in offered if "backup" in label)
    assert Condition("role", "has_role", "backup") in narrower[0]
    base = snapshot(w["repo"], "main")
    from policyctl.decide import build_revision
    from policyctl.draft.verify import make_fixtures, verify

    pipeline = build_revision(base, verify=False).pipeline

    def verified(bodies: list[list[Condition]]) -> Any:
        d = make_draft(ev, bodies, taken=set(), vocabulary=base.config.vocabulary)
        d.fixtures = make_fixtures(d, ev, pipeline)
        return verify(d, ev, base, pipeline)

    wide = verified(too_wide)
    assert not wide.verified and any("outside the failure region" in r for r in wide.reasons), wide.reasons
    assert verified(narrower).verified  # the conjunction over both contending roles passes
    best = InduceDrafter().draft(ev, base=pipeline, base_snapshot=base, taken=set())
    assert not isinstance(best, str) and best.verified
    assert best.attempts[0]["candidate"] == "learned" and sum(1 for a in best.attempts if a["chosen"]) == 1


def test_a_region_from_metadata_round_trips_and_refuses_nonsense() -> None:
    region = Region.from_list([{"field": "action.protocol", "op": "==", "value": "smb"},
                               {"field": "action.size_bytes", "op": ">=", "value": 2147483648}])
    assert region.contains({"kind": "action", "action": {"protocol": "smb", "size_bytes": 3e9}})
    assert not region.contains({"kind": "action", "action": {"protocol": "smb", "size_bytes": "3e9"}})
    assert Region.from_list(region.to_list()) == region
    with pytest.raises(ValidationError, match="needs a number"):
        Region.from_list([{"field": "x", "op": ">", "value": "big"}])
    assert not Region().contains({"kind": "action"})
