"""World files: the shipped worlds, the documented format, and the errors a world author sees."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT
from jsonschema import Draft202012Validator

from policyctl.cli.main import main
from policyctl.errors import ValidationError
from policyctl.simulate import load_world, parse_world, shipped_worlds, traffic, world_schema

BASE = """\
world: tiny
agents:
  - {role: etl, count: 3, id: "etl-{n}", priority: 5}
  - {role: deploy, count: 2}
traffic:
  - name: share
    weight: 1
    agents: {role: etl}
    action:
      type: file_share
      protocol: {choice: [smb, sftp]}
      file_type: parquet
      size_bytes: {uniform: [1, 100]}
    resource: {kind: share, id: fs-1}
  - name: port
    weight: 1
    kind: conflict
    agents: {role: {choice: [etl, deploy]}, count: 2}
    resource: {kind: port, port: 22}
faults:
  - name: parquet-smb
    when: {kind: action, action.protocol: smb}
    probability: 0.5
    status: crash
    messages: ["boom {agent} {input.action.file_type}"]
  - name: stuck
    when: {kind: conflict, resource.port: 22}
    probability: 0.5
    status: deadlock
    messages: ["stuck {agent} {other}"]
"""

# (what goes wrong, text replaced, replacement, the error the author reads)
MISTAKES = [
    ("unknown operator", "action.protocol: smb}", "action.protocol: {equals: smb}}",
     "bad.yaml:22: faults[0].when.action.protocol: unknown operator 'equals' (use one of: eq, ne, in"),
    ("misspelt field", "    probability: 0.5\n    status: crash", "    probabilty: 0.5\n    status: crash",
     "bad.yaml:23: faults[0].probabilty: unknown field (did you mean 'probability'?)"),
    ("status not in the enum", "status: crash", "status: crashed",
     'bad.yaml:24: faults[0].status: "crashed" is not one of: crash, deadlock, timeout, error'),
    ("probability out of range", "probability: 0.5\n    status: crash", "probability: 1.5\n    status: crash",
     "bad.yaml:23: faults[0].probability: 1.5 is greater than the maximum of 1"),
    ("weights do not match the choices", "{choice: [smb, sftp]}", "{choice: [smb, sftp], weights: [1]}",
     "bad.yaml:11: traffic[0].action.protocol.weights: 2 choices but 1 weights"),
    ("unknown template variable", "boom {agent}", "boom {agnet}",
     "bad.yaml:25: faults[0].messages[0]: unknown variable {agnet}"),
    ("a field no traffic sends", "action.protocol: smb}", "action.protcol: smb}",
     "bad.yaml:22: faults[0].when.action.protcol: no traffic sends the field 'action.protcol'; a typo?"),
    ("undeclared role", "agents: {role: etl}", "agents: {role: etll}",
     "bad.yaml:8: traffic[0].agents.role: unknown role 'etll' (roles: etl, deploy)"),
    ("a key written twice", "when: {kind: action, action.protocol: smb}", "when: {kind: action, kind: conflict}",
     "bad.yaml:22: faults[0].when.kind: key 'kind' appears twice"),
    ("YAML syntax", "    agents: {role: etl}\n", "    agents: {role: etl\n",
     "bad.yaml:9:11: not valid YAML"),
    ("deadlock without contention", "when: {kind: conflict, resource.port: 22}", "when: {resource.port: 22}",
     "bad.yaml:27: faults[1].when: a deadlock needs agents that contend: add `kind: conflict` to when"),
    ("comparison with text", "action.protocol: smb}", "action.size_bytes: {gt: \"2000\"}}",
     "bad.yaml:22: faults[0].when.action.size_bytes: gt compares numbers, got '2000' (write the number without quotes)"),
    ("a required field is missing", '    messages: ["stuck {agent} {other}"]\n', "",
     "bad.yaml:26: faults[1].messages: required field is missing"),
    ("a bad duration", "world: tiny\n", "world: tiny\ntime: {span: 7 days}\n",
     'bad.yaml:2: time.span: "7 days" is not a duration (write e.g. 500ms, 90s, 45m, 2d6h, 1w)'),
    ("a key that does not belong to the distribution", "{uniform: [1, 100]}", "{uniform: [1, 100], max: 3}",
     "bad.yaml:13: traffic[0].action.size_bytes.max: unknown key 'max' in a uniform (allowed: uniform)"),
    ("more agents than the roles have", "count: 2}\n    resource: {kind: port",
     "count: {uniform: [2, 9]}}\n    resource: {kind: port",
     "bad.yaml:18: traffic[1].agents.count: can draw 9 agents but only 5 agents have the roles etl, deploy"),
    ("a conflict of one", "count: 2}\n    resource: {kind: port", "count: 1}\n    resource: {kind: port",
     "bad.yaml:18: traffic[1].agents.count: can draw 1 agents; a conflict needs at least 2"),
    ("a list where a condition goes", "action.protocol: smb}", "action.protocol: [smb, nfs]}",
     'bad.yaml:22: faults[0].when.action.protocol: a list is not a condition; for one of several values write {in: ["smb", "nfs"]}'),
    ("an unclosed placeholder", "boom {agent}", "boom {agent",
     "bad.yaml:25: faults[0].messages[0]: unmatched '{'"),
    ("an intent path no traffic sends", "world: tiny\n", "world: tiny\nintent: [action.type, action.protcol]\n",
     "bad.yaml:2: intent[1]: no traffic sends the field 'action.protcol'; a typo? (did you mean 'action.protocol'?"),
    ("an intent path on its own line", "world: tiny\n", "world: tiny\nintent:\n  - resource.id\n  - resource.idd\n",
     "bad.yaml:4: intent[1]: no traffic sends the field 'resource.idd'; a typo? (did you mean 'resource.id'?"),
    ("an intent path the item does not send", "    resource: {kind: port, port: 22}\n",
     "    resource: {kind: port, port: 22}\n    intent: [action.file_type]\n",
     "bad.yaml:20: traffic[1].intent[0]: traffic 'port' does not send the field 'action.file_type'; a typo?"),
    ("an intent path that is a count", "world: tiny\n", "world: tiny\nintent: [\"count(agents)\"]\n",
     "bad.yaml:2: intent[0]: 'count(agents)' is not a dotted input path such as action.protocol or resource.id"),
    ("intent as a single path", "world: tiny\n", "world: tiny\nintent: resource.id\n",
     'bad.yaml:2: intent: expected array, got string "resource.id"'),
    ("an intent path twice", "world: tiny\n", "world: tiny\nintent: [resource.id, resource.id]\n",
     'bad.yaml:2: intent: "resource.id" is listed twice; keep one'),
    ("deny with other decisions", "    status: deadlock\n", "    status: deadlock\n    avoided_by: [deny, arbitrate]\n",
     "bad.yaml:30: faults[1].avoided_by: deny means that nothing but a deny avoids the fault; "
     "write avoided_by: [deny] alone"),
    ("an unknown decision avoids a fault", "    status: deadlock\n", "    status: deadlock\n    avoided_by: [allow]\n",
     'bad.yaml:30: faults[1].avoided_by[0]: "allow" is not one of: arbitrate, route, deny'),
]


@pytest.mark.parametrize(("old", "new", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_a_malformed_world_names_the_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         old: str, new: str, expected: str) -> None:
    assert old in BASE
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace(old, new, 1))
    code = main(["simulate", "--world", str(bad), "--events", "10", "-o", str(tmp_path / "events.jsonl")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"Error: {tmp_path}/{expected}"), err
    assert not (tmp_path / "events.jsonl").exists()


def test_the_base_world_of_the_mistakes_is_valid() -> None:
    world = parse_world(BASE, "base.yaml")
    assert [f.name for f in world.faults] == ["parquet-smb", "stuck"]


def test_an_unknown_world_lists_the_shipped_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--world", "demoo"]) == 1
    assert "no world named 'demoo': pass a YAML file or one of: buildfarm, demo, fleet" in capsys.readouterr().err


def test_shipped_worlds_fit_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(shipped_worlds()) >= {"demo", "fleet", "buildfarm"}
    schema = world_schema()
    Draft202012Validator.check_schema(schema)
    folder = PROJECT / "policyctl" / "simulate" / "worlds"
    vocabulary = {}
    for name in shipped_worlds():
        data = yaml.safe_load((folder / f"{name}.yaml").read_text())
        assert not list(Draft202012Validator(schema).iter_errors(data)), name
        world = load_world(name)
        assert len(world.faults) >= 4 and world.noise is not None
        vocabulary[name] = {t.name for t in world.traffic}
        assert any("arbitrate" in f.avoided_by for f in world.faults)
        assert any(f.deny_only for f in world.faults), name
        assert {f.status for f in world.faults} >= {"crash", "deadlock", "timeout", "error"}
        # Every shipped world says what its agents want, and only with fields its traffic sends.
        assert {"action.type", "resource.kind", "resource.id"} <= set(world.intent) <= world.input_paths, name
    names = sorted(vocabulary)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not vocabulary[a] & vocabulary[b], (a, b)
    assert main(["simulate", "--list-worlds"]) == 0
    out = capsys.readouterr().out
    assert "port22-deadlock: deadlock p=0.8 when kind == \"conflict\"" in out and "(avoided by arbitrate)" in out
    assert "buildfarm: 41 agents, 8 kinds of traffic, 5 faults" in out
    assert "coder-production-deploy-denied: error p=0.95 when" in out and "(avoided by deny)" in out


# Each shipped world's alternatives (what a policy repository declares in its vocabulary): every
# other field that its action traffic sends is intent.
ALTERNATIVES = {
    "demo": {"action.protocol"},
    "fleet": {"action.transport", "action.link"},
    "buildfarm": {"action.mirror", "action.cache", "action.runner", "action.upload", "action.strategy"},
}


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_shipped_worlds_declare_all_but_the_alternatives_intent(name: str) -> None:
    world = load_world(name)
    for item in world.traffic:
        intent = {text for text, _ in item.intent}
        sent = {p for p in world.input_paths if p.startswith(("action.", "resource.", "context."))}
        planned = [p.input for p in traffic(world, events=400, seed=1) if p.interaction is item]
        sent = {p for p in sent if any(_has(i, p) for i in planned)}
        assert sent, item.name
        # The demo's db-query speaks postgres only: there its protocol is intent too.
        alternatives = ALTERNATIVES[name] - ({"action.protocol"} if item.name == "db-query" else set())
        assert sent - alternatives <= intent, (item.name, sorted(sent - alternatives - intent))
        assert not (sent & alternatives & intent), item.name


def _has(value: object, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return not isinstance(value, dict)


def test_the_example_world_of_the_docs_loads_and_runs() -> None:
    doc = (PROJECT / "docs" / "worlds.md").read_text()
    section = doc.split("## A small, complete world", 1)[1]
    text = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert text is not None
    world = parse_world(text.group(1), "docs/worlds.md")
    assert world.name == "tiny" and [f.name for f in world.faults] == ["parquet-smb-crash"]
    planned = list(traffic(world, events=200, seed=1))
    assert len(planned) == 200
    assert {p.input["action"]["protocol"] for p in planned} == {"smb", "sftp", "nfs"}


def test_templates_read_earlier_fields_vars_and_formats() -> None:
    world = parse_world("""
world: formats
agents: [{role: bot, count: 12, id: "bot-{n:03d}", fields: {zone: {choice: [north, south]}}}]
traffic:
  - name: t
    weight: 1
    agents: {role: bot}
    action:
      type: map_sync
      format: {choice: [pcd, geojson]}
      file: {template: "{stem}-{n:02d}.{input.action.format}", vars: {n: {uniform: [1, 9]}}}
      size: {lognormal: {median: 1000, sigma: 0.5}, min: 900, max: 1100}
      tag: {const: {a: 1}}
      note: "literal {{braces}}"
    vars:
      stem: {choice: [scan, map]}
""", "formats.yaml")
    inputs = [p.input for p in traffic(world, events=300, seed=2)]
    ids = {i["agents"][0]["id"] for i in inputs}
    assert ids <= {f"bot-{n:03d}" for n in range(1, 13)} and len(ids) > 6
    for i in inputs:
        action = i["action"]
        assert re.fullmatch(rf"(scan|map)-0[1-9]\.{action['format']}", action["file"])
        assert 900 <= action["size"] <= 1100 and action["tag"] == {"a": 1}
        assert action["note"] == "literal {{braces}}"  # a plain string is a constant, not a template
        assert i["agents"][0]["zone"] in ("north", "south")
    with pytest.raises(ValidationError, match=r"traffic\[0\].action.file.template: \{input.action.format\}: "
                                              "no field 'action.format' is generated here"):
        parse_world("""
world: order
agents: [{role: bot, count: 1}]
traffic:
  - name: t
    weight: 1
    agents: {role: bot}
    action:
      type: map_sync
      file: {template: "x.{input.action.format}"}
      format: pcd
""", "order.yaml")


def test_bursts_concentrate_their_traffic(tmp_path: Path) -> None:
    world = parse_world("""
world: bursty
time: {start: "2026-01-01T00:00:00Z", span: 1d, bursts: [{at: 12h, width: 1h, share: 0.5, traffic: [storm]}]}
agents: [{role: bot, count: 20}]
traffic:
  - {name: calm, weight: 9, agents: {role: bot}, action: {type: ping}}
  - {name: storm, weight: 1, kind: conflict, agents: {role: bot, count: {uniform: [2, 8]}},
     resource: {kind: api}}
""", "bursty.yaml")
    planned = list(traffic(world, events=2000, seed=3))
    start = 1767225600000  # 2026-01-01T00:00:00Z
    in_burst = [p for p in planned if start + 12 * 3600_000 <= p.now_ms < start + 13 * 3600_000]
    assert len(in_burst) >= 0.5 * len(planned)
    kinds = Counter(p.interaction.name for p in in_burst)
    assert kinds["storm"] >= 0.9 * len(in_burst)
    assert [p.now_ms for p in planned] == sorted(p.now_ms for p in planned)
    assert all(len({a["id"] for a in p.input["agents"]}) == len(p.input["agents"]) for p in planned)


def test_yaml_times_and_numbers_read_as_written() -> None:
    world = parse_world("""
world: numbers
time: {start: 2026-05-01T10:00:00Z, span: 90m}
agents: [{role: bot, count: 1}]
traffic: [{name: t, weight: 1, agents: {role: bot}, action: {type: upload, size_bytes: 2e9, version: 4.2.1}}]
""", "numbers.yaml")
    assert world.start.isoformat() == "2026-05-01T10:00:00+00:00" and world.span == 5400
    action = next(iter(traffic(world, events=1, seed=0))).input["action"]
    assert json.dumps(action) == '{"type": "upload", "size_bytes": 2000000000.0, "version": "4.2.1"}'
