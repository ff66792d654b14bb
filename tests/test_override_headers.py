"""Strict override headers: every defect is a `policyctl check` error at file:line, never an exception in the gateway."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import PROJECT, commit_all, git, write
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from policyctl.cli.main import main
from policyctl.decide import build_revision
from policyctl.decide.checks import SCAFFOLD_DOC_MARKER, check_overrides
from policyctl.errors import PolicyctlError, ValidationError
from policyctl.gateway.evaluator import override_summaries
from policyctl.model.records import MAX_OVERRIDE_BYTES, OVERRIDE_HEADER_CODES, parse_override_header
from policyctl.repo import Snapshot, snapshot
from policyctl.sandbox import MAX_SOURCE_BYTES, OverrideSet, SandboxCompileError, compile_problems

SOON = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
BIG = 4 * 1024 * 1024

# Line 1 the docstring, 3 match, 4 expires, 5 priority: each defect names its own line.
GOOD = f'''"""Serialize deploy agents on port 22 until the lock service is fixed (INC-4412)."""
OVERRIDE = {{
    "match": {{"kind": "conflict", "resource.port": 9922}},
    "expires": "{SOON}",
    "priority": 100,
}}


def decide(input):
    return {{"action": "negotiate"}}
'''
CONFLICT = {"kind": "conflict", "agents": [{"id": "a"}, {"id": "b"}], "resource": {"kind": "port", "port": 9922}}


def _expires(value: str) -> str:
    return GOOD.replace(f'"{SOON}"', value)


def _match(value: str) -> str:
    return GOOD.replace('"resource.port": 9922', f'"resource.port": {value}')


def _priority(value: str) -> str:
    return GOOD.replace('"priority": 100', f'"priority": {value}')


def _doc(text: str) -> str:
    return GOOD.replace("until the lock service", f"until the lock {text}service")


def _padded() -> str:
    return GOOD + "# notes\n" * (BIG // 8)


# (case, script, marker of the line the error names (or a line number), code, words the message holds)
DEFECTS: list[tuple[str, str, str | int, str, str]] = [
    # exactly one top-level OVERRIDE assignment
    ("second_assignment", GOOD + 'OVERRIDE = {"match": {}, "expires": "' + SOON + '", "priority": 1000}\n',
     'OVERRIDE = {"match": {}', "override_header_rebound", "the header is at line 2"),
    ("augmented", GOOD + 'OVERRIDE |= {"match": {}}\n', "OVERRIDE |=", "override_header_rebound",
     "augmented assignment"),
    ("augmented_item", GOOD + 'OVERRIDE["priority"] += 900\n', 'OVERRIDE["priority"] +=',
     "override_header_rebound", "changed in place"),
    ("annotated", GOOD.replace("OVERRIDE = {", "OVERRIDE: dict = {"), "OVERRIDE: dict", "override_header_rebound",
     "annotation"),
    ("rebound_in_if", GOOD + 'if True:\n    OVERRIDE = {"match": {}, "expires": "' + SOON + '"}\n',
     "    OVERRIDE = ", "override_header_rebound", "exactly one top-level"),
    ("rebound_in_for", GOOD + 'for OVERRIDE in [{"match": {}}]:\n    pass\n', "for OVERRIDE",
     "override_header_rebound", "loop variable"),
    ("rebound_in_try", GOOD + 'try:\n    OVERRIDE = {"match": {}}\nexcept Exception:\n    pass\n',
     '    OVERRIDE = {"match": {}}', "override_header_rebound", "exactly one top-level"),
    ("rebound_by_except", GOOD + "try:\n    pass\nexcept Exception as OVERRIDE:\n    pass\n", "as OVERRIDE",
     "override_header_rebound", "except"),
    ("rebound_by_import", GOOD + "from os import path as OVERRIDE\n", "as OVERRIDE", "override_header_rebound",
     "import"),
    ("deleted", GOOD + "del OVERRIDE\n", "del OVERRIDE", "override_header_rebound", "deleted"),
    ("duplicate_key", _priority("100, \"priority\": 1000"), '"priority"', "override_priority", "given twice"),
    # every unparsable or out-of-range expiry
    ("expires_overflow", _expires('"9999-12-31T23:59:59-23:59"'), '"expires"', "override_expires", "out of range"),
    ("expires_underflow", _expires('"0001-01-01T00:00:00+01:00"'), '"expires"', "override_expires", "out of range"),
    ("expires_month_13", _expires('"2026-13-01T00:00:00Z"'), '"expires"', "override_expires", "out of range"),
    ("expires_leap_second", _expires('"2026-12-31T23:59:60Z"'), '"expires"', "override_expires", "out of range"),
    ("expires_offset_24h", _expires('"2026-12-20T00:00:00+24:00"'), '"expires"', "override_expires", "offset"),
    ("expires_no_timezone", _expires('"2026-12-20T00:00:00"'), '"expires"', "override_expires", "timezone"),
    ("expires_words", _expires('"next tuesday"'), '"expires"', "override_expires", "not RFC 3339"),
    ("expires_date_only", _expires('"2026-12-20"'), '"expires"', "override_expires", "not RFC 3339"),
    ("expires_other_digits", _expires('"\u0662\u0660\u0662\u0666-12-20T00:00:00Z"'), '"expires"',
     "override_expires", "not RFC 3339"),
    ("expires_number", _expires("20261220"), '"expires"', "override_expires", "expected string"),
    # the horizon (policyctl.toml's default 30 days), so also year 9999
    ("expires_past_horizon", _expires(f'"{(datetime.now(UTC) + timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")}"'),
     '"expires"', "override_expires_horizon", "the horizon is 30 days"),
    ("expires_year_9999", _expires('"9999-12-31T00:00:00Z"'), '"expires"', "override_expires_horizon",
     "override_horizon_days"),
    # the size cap before any parse: a 4 MB file, and 4 MB of brackets a parse would choke on
    ("too_large", _padded(), _padded().encode().count(b"\n", 0, MAX_OVERRIDE_BYTES) + 1, "override_too_large",
     "the limit is 65536"),
    ("too_large_nested", '"""Nested (INC-1)."""\nOVERRIDE = ' + "[" * BIG + "\n", 2, "override_too_large",
     "nothing was parsed"),
    # match values: JSON scalars or lists of them
    ("match_bytes", _match('[b"22"]'), '"resource.port"', "override_match_value", "bytes"),
    ("match_set", _match("{22, 2375}"), '"resource.port"', "override_match_value", "a set"),
    ("match_complex", _match("[22j]"), '"resource.port"', "override_match_value", "complex"),
    ("match_ellipsis", _match("..."), '"resource.port"', "override_match_value", "Ellipsis"),
    ("match_tuple", _match("(22, 2375)"), '"resource.port"', "override_match_value", "a tuple"),
    ("match_nested_list", _match("[[22]]"), '"resource.port"', "override_match_value", "nested too deeply"),
    ("match_dict", _match('{"port": 22}'), '"resource.port"', "override_match_value", "a dict cannot be matched"),
    ("match_empty_list", _match("[]"), '"resource.port"', "override_match_value", "selects nothing"),
    ("match_infinity", _match("1e999"), '"resource.port"', "override_match_value", "finite"),
    ("match_int_beyond_64_bits", _match(str(2**64)), '"resource.port"', "override_match_value", "64 bits"),
    ("match_name", _match("PORT"), '"resource.port"', "override_match_value", "a name"),
    # priority: an integer from -1000 to 1000
    ("priority_power", _priority("10**30"), '"priority"', "override_priority", "operator"),
    ("priority_literal", _priority(str(10**30)), '"priority"', "override_priority", "64 bits"),
    ("priority_over", _priority("1001"), '"priority"', "override_priority", "from -1000 to 1000"),
    ("priority_under", _priority("-1001"), '"priority"', "override_priority", "from -1000 to 1000"),
    ("priority_bool", _priority("True"), '"priority"', "override_priority", "from -1000 to 1000"),
    ("priority_float", _priority("1.5"), '"priority"', "override_priority", "from -1000 to 1000"),
    # match keys matched whole
    ("match_key_newline", GOOD.replace('"kind": "conflict"', '"kind\\n": "conflict"'), '"kind\\n"',
     "override_match_key", "not a dotted input path"),
    ("match_key_space", GOOD.replace('"kind": "conflict"', '"kind ": "conflict"'), '"kind "',
     "override_match_key", "not a dotted input path"),
    # control and bidi characters in the docstring (the decision's reason)
    ("doc_ansi_escaped", _doc("\\x1b[8m"), 1, "override_doc_unsafe", "U+001B"),
    ("doc_ansi_raw", _doc("\x1b[2J"), 1, "override_doc_unsafe", "U+001B"),
    ("doc_csi_c1", _doc("\\x9b8m"), 1, "override_doc_unsafe", "U+009B"),
    ("doc_carriage_return", _doc("\\r"), 1, "override_doc_unsafe", "U+000D"),
    ("doc_nul", _doc("\\x00"), 1, "override_doc_unsafe", "U+0000"),
    ("doc_rlo", _doc("\u202e"), 1, "override_doc_unsafe", "RIGHT-TO-LEFT OVERRIDE"),
    ("doc_lri", _doc("\u2066"), 1, "override_doc_unsafe", "LEFT-TO-RIGHT ISOLATE"),
    ("doc_rlm", _doc("\u200f"), 1, "override_doc_unsafe", "RIGHT-TO-LEFT MARK"),
    ("doc_bidi_third_line", GOOD.replace('(INC-4412)."""', '(INC-4412).\n\nOwner: \u2067ops\u2069\n"""'),
     "Owner:", "override_doc_unsafe", "RIGHT-TO-LEFT ISOLATE"),
]
SCAFFOLD = "todo_scaffold"  # written by the real `policyctl override new`
CASES = [d[0] for d in DEFECTS] + [SCAFFOLD]


def _line(source: str, marker: str | int) -> int:
    if isinstance(marker, int):
        return marker
    return next(i for i, text in enumerate(source.splitlines(), 1) if marker in text)


def _fixture(case: str) -> str:
    return json.dumps({"id": f"{case.replace('_', '-')}-001", "input": CONFLICT, "why": "prevent",
                       "expect": {"action": "negotiate", "reasons": [{"rule": case}]}}) + "\n"


@pytest.fixture(scope="module")
def defects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One commit of this project's policy set with one override per defect, each with a fixture."""
    repo = tmp_path_factory.mktemp("headers") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for top in ("policies", "shadow_fixtures"):
        if (PROJECT / top).is_dir():
            shutil.copytree(PROJECT / top, repo / top)
    write(repo, "policyctl.toml", (PROJECT / "policyctl.toml").read_text())
    for case, source, *_ in DEFECTS:
        write(repo, f"overrides/{case}.py", source)
        write(repo, f"shadow_fixtures/overrides/{case}.jsonl", _fixture(case))
    write(repo, "overrides/good.py", GOOD)
    write(repo, "shadow_fixtures/overrides/good.jsonl", _fixture("good"))
    assert main(["override", "new", SCAFFOLD, "--repo", str(repo)]) == 0
    commit_all(repo, "one override per header defect")
    return repo


@pytest.fixture(scope="module")
def checked(defects: Path) -> tuple[int, str]:
    """`policyctl check --ref HEAD` run once, by the installed command, on that commit: (exit code, output)."""
    done = subprocess.run([str(Path(sys.executable).with_name("policyctl")), "check", "--repo", str(defects),
                           "--ref", "HEAD"], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(("case", "source", "marker", "code", "words"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_policyctl_check_reports_each_header_defect_at_its_line(
        checked: tuple[int, str], case: str, source: str, marker: str | int, code: str, words: str) -> None:
    status, output = checked
    assert status == 1
    mine = [line for line in output.splitlines() if line.startswith(f"overrides/{case}.py")]
    assert len(mine) == 1, mine  # the defect alone fails the file (it has fixtures, and nothing else is wrong)
    assert mine[0].startswith(f"overrides/{case}.py:{_line(source, marker)}: error: {code}: "), mine[0]
    assert words in mine[0]


def test_the_scaffold_s_todo_docstring_is_refused_and_a_good_header_passes(checked: tuple[int, str],
                                                                           defects: Path) -> None:
    _, output = checked
    scaffold = (defects / f"overrides/{SCAFFOLD}.py").read_text()
    assert scaffold.startswith(f'"""{SCAFFOLD_DOC_MARKER}')  # the marker is what `override new` writes
    mine = [line for line in output.splitlines() if line.startswith(f"overrides/{SCAFFOLD}.py")]
    assert len(mine) == 1 and mine[0].startswith(f"overrides/{SCAFFOLD}.py:1: error: override_doc_placeholder: ")
    assert not [line for line in output.splitlines() if line.startswith("overrides/good.py")]
    assert f"{len(DEFECTS) + 2} overrides" in output


def test_every_code_check_reports_is_a_documented_one(checked: tuple[int, str]) -> None:
    _, output = checked
    codes = {line.split(": ")[2] for line in output.splitlines() if line.startswith("overrides/")}
    assert codes <= {*OVERRIDE_HEADER_CODES, "override_expires_horizon", "override_doc_placeholder"}
    docs = (PROJECT / "docs/overrides.md").read_text()
    assert all(f"`{code}`" in docs for code in codes)


def test_the_cli_offers_the_priorities_the_header_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from policyctl.model.records import MAX_PRIORITY, MIN_PRIORITY

    assert main(["override", "new", "--help"]) == 0
    assert f"{MIN_PRIORITY}<=x<={MAX_PRIORITY}" in capsys.readouterr().out
    assert main(["override", "new", "x", "--priority", str(MAX_PRIORITY + 1), "--repo", str(tmp_path)]) == 2
    assert "--priority" in capsys.readouterr().err
    for edge in (MIN_PRIORITY, MAX_PRIORITY):
        assert parse_override_header(_priority(str(edge)), file="overrides/x.py").priority == edge
    with pytest.raises(ValidationError) as info:
        parse_override_header(_priority(str(MAX_PRIORITY + 1)), file="overrides/x.py")
    assert info.value.code == "override_priority"


def test_a_script_the_header_refuses_as_too_large_the_sandbox_refuses_too() -> None:
    # the header's parser and the sandbox's compile wall apply one cap, each before it parses
    at_cap = GOOD + "#" * (MAX_OVERRIDE_BYTES - len(GOOD.encode()) - 1) + "\n"
    assert len(at_cap.encode()) == MAX_OVERRIDE_BYTES == MAX_SOURCE_BYTES
    parse_override_header(at_cap, file="overrides/x.py")
    assert not [p for p in compile_problems(at_cap, file="overrides/x.py") if "limit is" in p.message]
    over = at_cap + "#"
    with pytest.raises(ValidationError) as info:
        parse_override_header(over, file="overrides/x.py")
    assert info.value.code == "override_too_large"
    (problem,) = compile_problems(over, file="overrides/x.py")
    assert f"limit is {MAX_OVERRIDE_BYTES}" in problem.message


def test_the_cap_answers_before_the_parser_would() -> None:
    # 4 MiB of brackets: a parse would say "too many nested parentheses"; the cap answers without one.
    with pytest.raises(ValidationError) as info:
        parse_override_header('"""x."""\nOVERRIDE = ' + "[" * BIG, file="overrides/x.py")
    assert info.value.code == "override_too_large" and "nested" not in str(info.value)
    # Just under the cap, the same brackets do reach the parser, which refuses them at once.
    with pytest.raises(ValidationError, match="not valid Python: too many nested parentheses"):
        parse_override_header('"""x."""\nOVERRIDE = ' + "[" * (MAX_OVERRIDE_BYTES - 30), file="overrides/x.py")


def test_the_horizon_comes_from_policyctl_toml(defects: Path) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    base = snapshot(defects, "HEAD")
    script = _expires('"2026-12-11T00:00:00Z"')
    toml = (PROJECT / "policyctl.toml").read_text().replace("override_horizon_days = 30", "override_horizon_days = 7")
    assert "override_horizon_days = 7" in toml
    files = {p: d for p, d in base.files.items() if not p.startswith(("overrides/", "shadow_fixtures/overrides/"))}
    files |= {"overrides/soon.py": script.encode(), "shadow_fixtures/overrides/soon.jsonl": _fixture("soon").encode()}
    strict = dataclasses.replace(base, files=files | {"policyctl.toml": toml.encode()})
    _, problems = check_overrides(strict, now)
    assert [(p.line, p.code) for p in problems] == [(4, "override_expires_horizon")]
    assert "10 days from now; the horizon is 7 days" in problems[0].message
    _, problems = check_overrides(dataclasses.replace(base, files=files), now)  # the default: 30 days
    assert problems == []


# ------------------------------------------------------------------ the gateway's build path


def _only(base: Snapshot, case: str) -> Snapshot:
    """The commit with this one override (and its fixture) among the overrides."""
    keep = {f"overrides/{case}.py", f"shadow_fixtures/overrides/{case}.jsonl"}
    files = {p: d for p, d in base.files.items()
             if not p.startswith(("overrides/", "shadow_fixtures/overrides/")) or p in keep}
    return dataclasses.replace(base, files=files, blob_ids={p: b for p, b in base.blob_ids.items() if p in files})


@pytest.mark.parametrize("case", CASES)
def test_the_gateway_build_refuses_a_bad_header_with_its_line_and_never_fails_internally(
        defects: Path, opened: list[OverrideSet], case: str) -> None:
    snap = _only(snapshot(defects, "HEAD"), case)
    line = next((_line(d[1], d[2]) for d in DEFECTS if d[0] == case), None)
    code = next((d[3] for d in DEFECTS if d[0] == case), "override_header")
    summary = override_summaries(snap)  # what `gateway status` shows
    assert len(summary) == 1
    orjson.dumps(summary)  # encodable for the status, whatever the header held
    try:
        revision = build_revision(snap, verify=True)
    except SandboxCompileError as exc:
        assert f"overrides/{case}.py:{line}: {code}: " in exc.message  # the same code `check` reports
        assert summary[0]["mode"] == "invalid" and f"overrides/{case}.py:{line}: " in summary[0]["error"]
    else:  # what only `policyctl check` refuses (past the horizon, the TODO docstring) still serves
        if isinstance(revision.pipeline.overrides, OverrideSet):
            opened.append(revision.pipeline.overrides)
        assert case in ("expires_past_horizon", "expires_year_9999", SCAFFOLD)
        assert summary[0]["mode"] == "active"


def test_policyctl_override_test_reports_an_overflowing_expiry_as_an_error(
        defects: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(CONFLICT))
    status = main(["override", "test", "overrides/expires_overflow.py", "--repo", str(defects), "--input",
                   str(input_file)])
    assert status == 1  # not 3: no OverflowError reaches the top-level handler
    assert "overrides/expires_overflow.py:4: error: override_expires: OVERRIDE.expires" in capsys.readouterr().err


# -------------------------------------------------------------- fuzzing the header's values

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=4),
    st.complex_numbers(max_magnitude=1e6), st.just(Ellipsis),
)
_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.frozensets(st.integers(0, 9), max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
_stamps = st.one_of(
    st.text(max_size=30),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.builds(lambda y, mo, d, h, mi, s, tz: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{tz}",
              st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61),
              st.integers(0, 61), st.sampled_from(["Z", "", "+00:00", "-23:59", "+23:59", "+24:00", "-00:60", "z"])),
)


def _literal(value: Any) -> str:
    """Python source for a value; sets of frozensets and nan/inf print as names, which the header refuses too."""
    if isinstance(value, frozenset):
        return "{" + ", ".join(map(repr, sorted(value))) + "}" if value else "set()"
    if value is Ellipsis:
        return "..."
    if isinstance(value, float) and not math.isfinite(value):
        return "float('nan')" if math.isnan(value) else ("1e999" if value > 0 else "-1e999")
    if isinstance(value, list):
        return "[" + ", ".join(map(_literal, value)) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_literal, value)) + ",)"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


# Valid shapes often enough that both outcomes are exercised, hostile ones everywhere else.
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_keys = st.one_of(st.from_regex(r"[a-z_]{1,6}(\.[a-z0-9_]{1,4}){0,2}", fullmatch=True), st.text(max_size=10))
_match_values = st.one_of(_json_scalars, st.lists(_json_scalars, min_size=1, max_size=3), _values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(match=st.dictionaries(_keys, _match_values, max_size=3), expires=_stamps,
       priority=st.one_of(st.integers(-1200, 1200), _values),
       extra=st.dictionaries(st.sampled_from(["timeout_ms", "colour", "match"]), _values, max_size=1),
       doc=st.one_of(st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
                     st.text(min_size=1, max_size=40)))
def test_any_header_is_either_valid_or_a_policyctl_error(match: dict[str, Any], expires: str, priority: Any,
                                                         extra: dict[str, Any], doc: str) -> None:
    header = {"match": match, "expires": expires, "priority": priority, **extra}
    source = (f"{doc!r}\nOVERRIDE = {{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in header.items())
              + "}\n\ndef decide(input):\n    return None\n")
    try:
        parsed = parse_override_header(source, file="overrides/fuzz.py")
    except PolicyctlError as exc:
        event(f"refused: {exc.code}" if isinstance(exc, ValidationError) else "refused")
        assert isinstance(exc, ValidationError) and exc.code in OVERRIDE_HEADER_CODES
        assert re.match(r"overrides/fuzz\.py:\d+: ", str(exc)), str(exc)  # always a file:line
    else:
        event("accepted")
        orjson.dumps({"match": parsed.match, "priority": parsed.priority, "doc": parsed.doc,
                      "expires": parsed.expires.isoformat()})  # what the status shows can be encoded
        assert parsed.expires.utcoffset() == timedelta(0) and -1000 <= parsed.priority <= 1000
    snap = Snapshot(None, {"overrides/fuzz.py": source.encode("utf-8", "surrogatepass")})
    orjson.dumps(override_summaries(snap))
    _, problems = check_overrides(snap, datetime(2026, 12, 1, tzinfo=UTC))
    assert all(p.file == "overrides/fuzz.py" for p in problems)


# ------------------------------------------------------------ `override test` and match


def test_override_test_runs_decide_only_when_match_selects_the_input_or_with_force(
        defects: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(defects, "overrides/elsewhere.py", GOOD.replace('"resource.port": 9922', '"resource.port": 2375').replace(
        '    return {"action": "negotiate"}', '    print("ran")\n    return {"action": "negotiate"}'))
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(CONFLICT))
    args = ["override", "test", "overrides/elsewhere.py", "--repo", str(defects), "--input", str(input_file)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert ("Error: overrides/elsewhere.py:2: OVERRIDE['match'] does not select this input" in captured.err
            and "--force" in captured.err)
    assert "print: ran" not in captured.out and "negotiate" not in captured.out
    assert main([*args, "--json"]) == 1
    trial = json.loads(capsys.readouterr().out)
    assert trial["selects"] is False and trial["ran"] is False and trial["decision"] is None
    # --force runs it anyway, and still says the pipeline would skip it
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "does not select this input" in out and "print: ran" in out and out.rstrip().splitlines()[-1].startswith(
        "negotiate")
    # a match that selects the input runs without --force
    assert main(["override", "test", "overrides/good.py", "--repo", str(defects), "--input", str(input_file)]) == 0
    assert capsys.readouterr().out.startswith("negotiate")
