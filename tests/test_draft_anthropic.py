"""The anthropic drafter: the real SDK against a Messages API server on 127.0.0.1, on simulated logs.

The demo world is simulated on a policy set with main.rego only, so its faults show; the
clusters come from `cluster_logs`; the drafts are verified against a base holding the
seed's port rule (so the prompt quotes an existing rule) but not its parquet rule.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest
from conftest import PROJECT, commit_all, git
from fake_anthropic import FakeAnthropic, error, reply, stall

from policyctl.bot.body import plain_words, title_for
from policyctl.cli.main import main
from policyctl.cluster import cluster_logs
from policyctl.decide import Pipeline, build_revision
from policyctl.draft.data import Evidence, load_evidence
from policyctl.draft.llm import DEFAULT_MODEL, AnthropicDrafter, AnthropicError
from policyctl.draft.metadata import with_drafter, with_region
from policyctl.errors import PolicyctlError
from policyctl.model.cluster import Cluster, ClusterReport
from policyctl.model.draft import Draft
from policyctl.model.region import region_of_cluster
from policyctl.repo import Snapshot, snapshot

NAME = "crash_parquet_smb"


def module(fingerprint: str, *, package: str = f"agentgov.rules.{NAME}", condition: str = 'input.action.file_type == "parquet"',
           extra: str = "") -> str:
    """A rule module as Claude would write it for the parquet-over-SMB crashes: route them to SFTP."""
    return f"""# METADATA
# title: Route parquet shares off SMB to SFTP
# description: >-
#   Parquet files written over SMB crash the writing agent (STATUS_INVALID_PARAMETER,
#   segfaults in libsmb2). The same shares over SFTP succeed, so route them there.
# custom:
#   cluster: {fingerprint}
#   mode: enforce
package {package}

import rego.v1
{extra}
decisions contains {{
	"id": "route_parquet_smb_to_sftp",
	"action": "route",
	"params": {{"action": {{"protocol": "sftp"}}}},
	"message": "parquet over SMB crashes agents; route it over SFTP",
}} if {{
	input.kind == "action"
	input.action.type == "file_share"
	{condition}
	input.action.protocol == "smb"
}}
"""


def with_cluster_region(rego: str, cluster: Cluster) -> str:
    """A module as Claude returned it, with what the drafter adds to its METADATA: the cluster's failure
    region and `drafter: anthropic`."""
    return with_drafter(with_region(rego, region_of_cluster(cluster)), "anthropic")


def answer(rego: str) -> str:
    return ("When: a parquet file is shared over SMB\n"
            "Why: the same parquet shares over SFTP succeed hundreds of times in the logs\n\n"
            f"```rego\n{rego}```\n")


@dataclass
class World:
    clusters_file: Path
    clusters: ClusterReport
    log: Path
    fingerprint: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Simulated demo logs on a main.rego-only policy set, clustered."""
    root = tmp_path_factory.mktemp("anthropic")
    bare = root / "bare"
    bare.mkdir()
    git(bare, "init", "-q", "-b", "main")
    (bare / "policies").mkdir()
    shutil.copy(PROJECT / "policies/main.rego", bare / "policies/main.rego")
    shutil.copy(PROJECT / "policyctl.toml", bare / "policyctl.toml")  # the demo world's vocabulary
    commit_all(bare, "main only")
    log = root / "events.jsonl"
    assert main(["simulate", "--world", "demo", "--events", "3000", "--seed", "1", "--repo", str(bare),
                 "-o", str(log)]) == 0
    doc, _ = cluster_logs([log], embedder="tfidf")
    fingerprint = next(c.fingerprint for c in doc.systemic if c.fingerprint.startswith("crash-parquet-smb"))
    clusters_file = root / "clusters.json"
    clusters_file.write_text(json.dumps(doc.to_dict()))
    return World(clusters_file, doc, log, fingerprint)


@pytest.fixture
def base_repo(make_repo: Callable[..., Path]) -> Path:
    """The seed policy set without its parquet rule and fixtures: the fault is not yet prevented."""
    repo = make_repo()
    shutil.rmtree(repo / "policies/file_share")
    shutil.rmtree(repo / "shadow_fixtures/file_share")
    commit_all(repo, "drop the parquet rule")
    return repo


@dataclass
class Case:
    ev: Evidence
    base: Pipeline
    snap: Snapshot

    def draft(self, drafter: AnthropicDrafter) -> Draft | str:
        with drafter:
            return drafter.draft(self.ev, base=self.base, base_snapshot=self.snap, taken=set())


@pytest.fixture
def case(world: World, base_repo: Path) -> Case:
    clusters = [c for c in world.clusters.clusters if c.fingerprint == world.fingerprint]
    (ev,), _ = load_evidence(clusters, [world.log])
    snap = snapshot(base_repo, "HEAD")
    return Case(ev, build_revision(snap, verify=False).pipeline, snap)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeAnthropic]]:
    """Start a fake server with a script, and point the SDK's environment at it."""
    servers: list[FakeAnthropic] = []

    def start(*script: object) -> FakeAnthropic:
        server = FakeAnthropic(list(script)).__enter__()  # type: ignore[arg-type]
        servers.append(server)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
        monkeypatch.delenv("POLICYCTL_ANTHROPIC_MODEL", raising=False)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def last_user_text(server: FakeAnthropic, request: int) -> str:
    msg = server.requests[request].messages[-1]
    assert msg["role"] == "user"
    return str(msg["content"])


def test_a_good_answer_is_verified_and_written_as_returned(world: World, base_repo: Path, api: Callable[..., FakeAnthropic],
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rego = module(world.fingerprint)
    server = api(reply(answer(rego)))
    monkeypatch.setenv("POLICYCTL_ANTHROPIC_MODEL", "claude-test-model")
    out = tmp_path / "out"
    code = main(["draft", "--repo", str(base_repo), "--clusters", str(world.clusters_file), "--logs", str(world.log),
                 "--cluster", world.fingerprint, "--drafter", "anthropic", "-o", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    (d,) = doc["drafts"]
    assert d["verified"] and d["drafter"] == "anthropic" and not d["reasons"]
    cluster = next(c for c in world.clusters.clusters if c.fingerprint == world.fingerprint)
    written = (out / f"policies/rules/{NAME}.rego").read_text()
    assert written == with_cluster_region(rego, cluster)
    assert "#   drafter: anthropic" in written  # so `policyctl check` holds it to the vocabulary as drafted
    assert d["verification"]["holdout"]["prevented"] == d["verification"]["holdout"]["events"] > 0
    assert d["verification"]["collateral"]["changed"] == 0
    assert d["remedy"]["action"] == "route" and d["remedy"]["params"] == {"action": {"protocol": "sftp"}}
    assert d["remedy"]["why"].startswith("the same parquet shares over SFTP")
    assert d["conditions_in_words"] == ["a parquet file is shared over SMB"]
    assert d["rule_id"] == "route_parquet_smb_to_sftp"
    assert d["verification"]["llm"]["model"] == "claude-test-model" and d["verification"]["llm"]["attempts"] == 1
    fixtures = [json.loads(line) for line in (out / f"shadow_fixtures/{NAME}.jsonl").read_text().splitlines()]
    assert {f["why"] for f in fixtures} == {"prevent", "keep"}
    assert all(f["expect"] == {"action": "route", "params": {"action": {"protocol": "sftp"}}}
               for f in fixtures if f["why"] == "prevent")
    # one request, carrying what Claude needs: conventions, hazards, policies, cluster, samples, the name
    (seen,) = server.requests
    assert seen.body["model"] == "claude-test-model" and seen.api_key == "sk-ant-test-key"
    system, prompt = seen.body["system"], seen.messages[0]["content"]
    for must in ("order numbers AS STRINGS", "on ONE line", "some k, v in", 'input.kind == "action"',
                 "custom.mode: enforce", "exactly one fenced ```rego block"):
        assert must in system
    for must in (f"package `agentgov.rules.{NAME}`", world.fingerprint, "policies/main.rego", "policies/net/ports.rego",
                 "STATUS_INVALID_PARAMETER", '"protocol": "sftp"'):
        assert must in prompt
    assert "policies/file_share/parquet.rego" not in prompt


def test_invalid_rego_is_sent_back_with_the_compile_error_and_fixed(world: World, case: Case,
                                                                   api: Callable[..., FakeAnthropic]) -> None:
    # a mistake models make: a builtin that does not exist (OPA's check refuses it; engines only at run time)
    broken = module(world.fingerprint, extra='\nroutes := [v | some v in strings.split_all("smb,sftp", ",")]\n')
    good = module(world.fingerprint)
    server = api(reply(answer(broken)), reply(answer(good)))
    d = case.draft(AnthropicDrafter())
    assert isinstance(d, Draft) and d.verified, getattr(d, "reasons", d)
    assert d.module_text == with_cluster_region(good, case.ev.cluster) and d.verification["llm"]["attempts"] == 2
    assert len(server.requests) == 2
    feedback = last_user_text(server, 1)
    assert "Attempt 1 was not accepted" in feedback
    assert f"policies/rules/{NAME}.rego:" in feedback and "undefined_function" in feedback and "strings.split_all" in feedback
    # the conversation goes on: first prompt, Claude's broken module, the errors
    assert [m["role"] for m in server.requests[1].messages] == ["user", "assistant", "user"]
    assert "strings.split_all" in server.requests[1].messages[1]["content"]


def test_a_wrong_package_name_is_fixed_not_rejected(world: World, case: Case, api: Callable[..., FakeAnthropic]) -> None:
    api(reply(answer(module(world.fingerprint, package="agentgov.rules.parquet_over_smb"))))
    d = case.draft(AnthropicDrafter())
    assert isinstance(d, Draft) and d.verified
    assert f"package agentgov.rules.{NAME}\n" in d.module_text
    assert d.verification["llm"]["fixed"] == [f"package agentgov.rules.parquet_over_smb renamed to agentgov.rules.{NAME}"]


@pytest.mark.parametrize("status", [429, 500, 529])
def test_rate_limits_and_server_errors_are_retried(world: World, case: Case, api: Callable[..., FakeAnthropic],
                                                   status: int) -> None:
    server = api(error(status), reply(answer(module(world.fingerprint))))
    with anthropic.Anthropic(api_key="sk-ant-explicit", base_url=server.url, max_retries=2) as client:
        d = case.draft(AnthropicDrafter(client=client))
    assert isinstance(d, Draft) and d.verified
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body  # the SDK retried the same request
    assert server.requests[1].api_key == "sk-ant-explicit"


def test_rate_limiting_that_does_not_end_is_a_clear_error(case: Case, api: Callable[..., FakeAnthropic]) -> None:
    server = api(*[error(429, "Number of request tokens has exceeded your per-minute rate limit")] * 3)
    with pytest.raises(AnthropicError, match=r"rate limiting this key \(429: rate_limit_error: Number of request") as caught:
        case.draft(AnthropicDrafter(max_retries=2))
    assert caught.value.code == "anthropic_rate_limited" and len(server.requests) == 3


def test_a_timeout_is_a_clear_error_and_does_not_wait_for_the_server(case: Case, api: Callable[..., FakeAnthropic]) -> None:
    server = api(stall(30), stall(30))
    with pytest.raises(PolicyctlError, match=r"did not answer within 0.3 s, 2 tries") as caught:
        case.draft(AnthropicDrafter(timeout_s=0.3, max_retries=1))
    assert caught.value.code == "anthropic_timeout"
    assert len(server.requests) == 2 and server.stalled_through == 0  # both requests given up long before the stall ended


def test_a_reply_without_code_is_retried_then_reported(case: Case, api: Callable[..., FakeAnthropic]) -> None:
    prose = "I would route parquet files away from SMB, since SMB crashes on large sequential writes."
    server = api(reply(prose), reply(prose), reply(prose))
    result = case.draft(AnthropicDrafter(max_attempts=3))
    assert isinstance(result, str)
    assert result.startswith("no Rego module from Claude") and "no ```rego fenced code block" in result
    assert len(server.requests) == 3
    assert "your reply holds no ```rego fenced code block" in last_user_text(server, 1)


def test_a_draft_that_fails_verification_is_returned_rejected_with_reasons(world: World, case: Case,
                                                                          api: Callable[..., FakeAnthropic]) -> None:
    # every SMB share, parquet or not: routes successful csv-over-SMB traffic too
    broad = module(world.fingerprint, condition='input.resource.kind == "share"')
    server = api(reply(answer(broad)), reply(answer(broad)))
    d = case.draft(AnthropicDrafter(max_attempts=2))
    assert isinstance(d, Draft) and not d.verified
    assert any("keep" in r and "fixture_failed" in r for r in d.reasons), d.reasons
    assert d.reasons[-1] == f"not verified after 2 attempt(s) with {DEFAULT_MODEL}"
    feedback = last_user_text(server, 1)
    assert "successful traffic that must stay as it is" in feedback and '"protocol":"smb"' in feedback


def test_a_route_that_rewrites_the_agents_intent_is_rejected_whatever_the_model_says(
        world: World, case: Case, api: Callable[..., FakeAnthropic]) -> None:
    # file_type is not a declared alternative of file_share (policyctl.toml): it is what the agent shares
    rego = module(world.fingerprint).replace('"params": {"action": {"protocol": "sftp"}}',
                                             '"params": {"action": {"file_type": "csv"}}')
    api(reply(answer(rego)))
    d = case.draft(AnthropicDrafter(max_attempts=1))
    assert isinstance(d, Draft) and not d.verified
    assert any("route rewrites the agent's intent" in r and "action.file_type" in r for r in d.reasons), d.reasons


def test_a_claude_draft_is_titled_and_counted_by_its_own_rego(world: World, case: Case,
                                                             api: Callable[..., FakeAnthropic]) -> None:
    api(reply(answer(module(world.fingerprint))))
    d = case.draft(AnthropicDrafter(max_attempts=1))
    assert isinstance(d, Draft) and d.verified, getattr(d, "reasons", d)
    # the title carries the module's conditions as written, not "(always)"
    assert title_for(d) == ('policyctl: route {"action": {"protocol": "sftp"}} when input.kind == "action" and '
                            'input.action.type == "file_share" and input.action.file_type == "parquet" and '
                            'input.action.protocol == "smb"')
    assert plain_words(d) == "When a parquet file is shared over SMB, route it over protocol sftp."
    # every failure of the cluster is one the module decides: none is "outside the rule"
    v = d.verification
    assert v["residual"] == {"failures": 0, "of": len(case.ev.failures), "examples": []}
    assert v["match"]["failed"] == len(case.ev.failures) and v["match"]["attempts"] >= v["match"]["failed"]


def test_prompts_mask_secrets_and_budgets_stop_the_retries(case: Case, api: Callable[..., FakeAnthropic]) -> None:
    first = case.ev.train[0]
    first["outcome"]["message"] = ("auth failed for ops@example.com from 10.20.30.40: password=hunter2, "
                                   "token sk-ant-api03-abcdefghijklmnop")
    first["input"]["context"] = {"api_key": "k-123-secret"}
    server = api(reply("Let me think about it.", input_tokens=9000, output_tokens=10), reply("again"))
    result = case.draft(AnthropicDrafter(token_budget=5000))
    assert isinstance(result, str) and "token budget of 5000 used (9010)" in result
    assert len(server.requests) == 1
    text = server.requests[0].text()
    for secret in ("ops@example.com", "10.20.30.40", "hunter2", "sk-ant-api03-abcdefghijklmnop", "k-123-secret"):
        assert secret not in text
    assert "auth failed for <email> from <ip>: password=<redacted>" in text and '"api_key": "<redacted>"' in text


def test_no_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(PolicyctlError, match="ANTHROPIC_API_KEY is not set"):
        AnthropicDrafter()
