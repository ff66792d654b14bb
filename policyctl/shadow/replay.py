"""Replay fixtures and logged events through a base and a candidate revision, in parallel.

Each worker process compiles both revisions once, then takes chunks of raw log lines
(parsing is parallel too) and returns a small Partial; the parent reads the logs as a
stream and keeps a bounded number of chunks in flight, so memory stays flat however
long the logs are.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import orjson

from policyctl.decide import Pipeline, build_revision, load_fixtures
from policyctl.errors import InputError, PolicyCompileError, PolicyctlError, Problem
from policyctl.model.expect import mismatches
from policyctl.model.jsonl import MAX_LINE_BYTES, iter_lines
from policyctl.model.records import FAILURES, Fixture
from policyctl.model.region import Region
from policyctl.model.schema import schema_errors
from policyctl.model.shadow import ERROR, Example, Partial, ShadowReport, transition
from policyctl.repo import Snapshot

CHUNK_LINES = 1000
Progress = Callable[[int], None]

# severity of a change to traffic that worked: what a reviewer must see first
_SEVERITY = {"deny": 4, "ERROR": 4, "route": 2, "arbitrate": 2, "negotiate": 1, "allow": 1}


class CandidateError(PolicyctlError):
    """A revision of the replay does not compile or cannot be loaded."""

    code = "shadow_revision_invalid"


def build_pipeline(snapshot: Snapshot, side: str) -> Pipeline:
    try:
        return build_revision(snapshot, verify=False).pipeline
    except PolicyCompileError as exc:
        lines = "\n  ".join(str(p) for p in exc.problems[:20]) or exc.message
        raise CandidateError(f"the {side} revision ({snapshot.label[:12]}) does not build:\n  {lines}") from exc


def decide(pipeline: Pipeline, input: Any) -> dict[str, Any]:
    try:
        return pipeline.decide_dict(input)
    except InputError as exc:
        return {"action": ERROR, "params": {}, "source": "error", "error": {"code": exc.code, "message": exc.message}}


def label(decision: dict[str, Any]) -> str:
    return ERROR if decision.get("source") == "error" else str(decision.get("action"))


def signature(decision: dict[str, Any], with_params: bool = True) -> str:
    if decision.get("source") == "error":
        return ERROR
    if not with_params:
        return str(decision.get("action"))
    return f"{decision.get('action')} {orjson.dumps(decision.get('params') or {}, option=orjson.OPT_SORT_KEYS).decode()}"


def deciding_rule(decision: dict[str, Any]) -> str:
    source = str(decision.get("source", ""))
    if source == "policy" and decision.get("reasons"):
        return str(decision["reasons"][0].get("rule"))
    if source.startswith("override:"):
        return source
    return f"({source or 'none'})"


def rule_regions(pipeline: Pipeline) -> dict[str, Region]:
    """The failure region of each enforced rule module that declares one, by file."""
    return {m.file: m.region for m in pipeline.policies.rule_modules if m.region is not None and m.region.tests}


def ok_change(input: dict[str, Any], b: dict[str, Any], c: dict[str, Any], regions: dict[str, Region]) -> str | None:
    """How a logged success fares: None when its decision is unchanged, `in_region` when the rule
    that now decides it answers a failure region that contains it (a lucky success changed by
    design), else `collateral`. The one definition every replay and verification uses."""
    if signature(b) == signature(c):
        return None
    for reason in c.get("reasons") or []:
        region = regions.get(str(reason.get("file")))
        if region is not None and region.contains(input):
            return "in_region"
    return "collateral"


class Replayer:
    """Both revisions' pipelines, and how one record is classified."""

    def __init__(self, base: Pipeline, candidate: Pipeline) -> None:
        self.base = base
        self.candidate = candidate
        self.regions = rule_regions(candidate)

    def _attribute(self, b: dict[str, Any], c: dict[str, Any]) -> str:
        rule = deciding_rule(c)
        return rule if not rule.startswith("(") else deciding_rule(b)

    def fixtures(self, fixtures: list[Fixture]) -> Partial:
        part = Partial()
        for fx in fixtures:
            b, c = decide(self.base, fx.input), decide(self.candidate, fx.input)
            problems = mismatches(fx.expect, c)
            if c.get("source") == "error" and fx.expect.get("source") != "error":
                problems.insert(0, f"evaluation error {c.get('error', {}).get('code')}: {c.get('error', {}).get('message')}")
            part.count("records")
            part.count("fixtures")
            part.count("fixtures_passed" if not problems else "fixtures_failed")
            part.count("errors_base" if label(b) == ERROR else "ok_base")
            part.count("errors_candidate" if label(c) == ERROR else "ok_candidate")
            part.count("changed" if signature(b) != signature(c) else "unchanged")
            part.add_transition(transition(label(b), label(c)), self._attribute(b, c), fx.file)
            part.fixture_results.append({"id": fx.id, "file": fx.file, "line": fx.line, "why": fx.why,
                                         "passed": not problems, "problems": problems, "expect": fx.expect,
                                         "input": fx.input, "decision": {k: c.get(k) for k in
                                                                         ("action", "params", "source", "reasons", "fired", "error")}})
            if problems:
                part.add_example(Example("failing_fixture", fx.id, fx.where, fx.input, b, c, problems, rank=10))
        return part

    def events(self, file: str, lines: list[tuple[int, bytes]]) -> Partial:
        part = Partial()
        for lineno, raw in lines:
            record = _parse_event(raw, file, lineno, part)
            if record is None:
                continue
            inp = record["input"]
            b, c = decide(self.base, inp), decide(self.candidate, inp)
            lb, lc = label(b), label(c)
            part.count("records")
            part.count("events")
            part.count("errors_base" if lb == ERROR else "ok_base")
            part.count("errors_candidate" if lc == ERROR else "ok_candidate")
            changed = signature(b) != signature(c)
            part.count("changed" if changed else "unchanged")
            part.add_transition(transition(lb, lc), self._attribute(b, c), None)
            if changed:
                part.add_change(inp)
            outcome: dict[str, Any] = record["outcome"] if isinstance(record.get("outcome"), dict) else {}
            status = outcome.get("status")
            where = f"{file}:{lineno}"
            ref = str(record.get("id"))
            if status in FAILURES:
                part.count("failures")
                logged = record.get("decision") if isinstance(record.get("decision"), dict) else None
                with_params = logged is None or "params" in logged
                then = signature(logged, with_params) if logged else signature(b)
                now_base, now_cand = signature(b, with_params), signature(c, with_params)
                if now_cand != then:
                    part.count("prevented")
                    if now_base == then:
                        part.count("newly_prevented")
                        part.add_example(Example("prevented", ref, where, inp, b, c, [f"was {status}: {outcome.get('message', '')}"[:200]], rank=1))
                else:
                    part.count("exposed")
                    part.add_example(Example("exposed", ref, where, inp, b, c,
                                             [f"{status}: {outcome.get('message', '')}"[:200]], rank=1))
            elif status == "ok":
                part.count("successes")
                kind = ok_change(inp, b, c, self.regions) if changed else None
                if kind == "in_region":
                    part.count("in_region")
                elif kind == "collateral":
                    part.count("collateral")
                    part.add_example(Example("collateral", ref, where, inp, b, c,
                                             [f"worked under {lb}; the candidate answers {lc}"], rank=_SEVERITY.get(lc, 1)))
            elif status == "denied":
                part.count("denied")
            else:
                part.count("no_outcome")
        return part


def _parse_event(raw: bytes, file: str, lineno: int, part: Partial) -> dict[str, Any] | None:
    if not raw.strip():
        part.count("blank")
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        part.count("lines_rejected")
        part.problems.append(Problem(file, f"not JSON ({str(exc).split(':', 1)[0]}); skipped", code="bad_json", line=lineno))
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(record.get("input"), dict):
        errors = schema_errors("event", record)
        path, message = errors[0] if errors else ("", "not an Event")
        part.count("lines_rejected")
        part.problems.append(Problem(file, f"{path + ': ' if path else ''}{message}; skipped", code="validation_error", line=lineno))
        return None
    return record


# --------------------------------------------------------------------------- workers

_WORKER: dict[str, Replayer] = {}


def _worker_init(base: Snapshot, candidate: Snapshot) -> None:
    _WORKER["replayer"] = Replayer(build_pipeline(base, "base"), build_pipeline(candidate, "candidate"))


def _worker_events(file: str, lines: list[tuple[int, bytes]]) -> Partial:
    return _WORKER["replayer"].events(file, lines)


def _worker_fixtures(fixtures: list[Fixture]) -> Partial:
    return _WORKER["replayer"].fixtures(fixtures)


def _chunks(paths: list[Path], part: Partial, progress: Progress | None) -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    for path in paths:
        name = str(path)
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below; this is a generator
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror})") from exc
        with stream:
            chunk: list[tuple[int, bytes]] = []
            lineno = 0
            for raw, too_long in iter_lines(stream):
                lineno += 1
                if progress:
                    progress(len(raw))
                if too_long:
                    part.count("lines_rejected")
                    part.problems.append(Problem(name, f"line longer than {MAX_LINE_BYTES} bytes; skipped",
                                                 code="line_too_long", line=lineno))
                    continue
                chunk.append((lineno, raw))
                if len(chunk) >= CHUNK_LINES:
                    yield name, chunk
                    chunk = []
            if chunk:
                yield name, chunk


def replay(
    base: Snapshot,
    candidate: Snapshot,
    logs: list[Path] | None = None,
    *,
    fixtures: bool = True,
    jobs: int = 1,
    max_collateral_pct: float = 0.5,
    progress: Progress | None = None,
) -> ShadowReport:
    """Replay the candidate's fixtures and the logs through both revisions."""
    logs = list(logs or [])
    for path in logs:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file")
    # compile both here first: a broken revision fails fast with file:line, before any worker starts
    base_p = build_pipeline(base, "base")
    cand_p = build_pipeline(candidate, "candidate")
    total = Partial()
    fixture_list: list[Fixture] = []
    if fixtures:
        fixture_list, problems = load_fixtures(candidate)
        for problem in problems:
            total.count("fixtures_failed")
            total.count("fixtures")
            total.problems.append(problem)
            total.fixture_results.append({"id": f"{problem.file}:{problem.line}", "file": problem.file,
                                          "line": problem.line or 0, "why": None, "passed": False,
                                          "problems": [problem.message], "expect": None, "input": None, "decision": None})
    jobs = max(1, jobs)
    if jobs == 1:
        replayer = Replayer(base_p, cand_p)
        total.merge(replayer.fixtures(fixture_list))
        for file, lines in _chunks(logs, total, progress):
            total.merge(replayer.events(file, lines))
    else:
        _replay_parallel(base, candidate, logs, fixture_list, jobs, total, progress)
    rules = {}
    for pipeline in (base_p, cand_p):
        for module in pipeline.policies.rule_modules:
            for rid in _rule_ids(module.text):
                rules[rid] = module.cluster
    report = ShadowReport(base=base.label, candidate=candidate.label, partial=total,
                          max_collateral_pct=max_collateral_pct, rule_clusters=rules, logs=[str(p) for p in logs],
                          lines_rejected=total.totals["lines_rejected"])
    return report


def _replay_parallel(base: Snapshot, candidate: Snapshot, logs: list[Path], fixture_list: list[Fixture],
                     jobs: int, total: Partial, progress: Progress | None) -> None:
    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds regopy and threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(base, candidate)) as pool:
        pending: deque[Future[Partial]] = deque()
        if fixture_list:
            pending.append(pool.submit(_worker_fixtures, fixture_list))
        for file, lines in _chunks(logs, total, progress):
            pending.append(pool.submit(_worker_events, file, lines))
            while len(pending) >= jobs * 3:  # bounded in flight: flat memory on any log size
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    pending.remove(future)
                    total.merge(future.result())
        for future in pending:
            total.merge(future.result())


def _rule_ids(text: str) -> list[str]:
    import re

    return re.findall(r'"id"\s*:\s*"([^"]+)"', text)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
