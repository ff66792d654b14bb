"""The evaluation worker process: holds compiled revisions and answers one framed request at a time on its pipes."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections import OrderedDict
from typing import Any

import orjson

from policyctl.decide import Pipeline, Revision, build_revision
from policyctl.engine.modules import MAIN_PACKAGE, RegoModule
from policyctl.errors import PolicyCompileError, PolicyctlError
from policyctl.model import parse_override_header
from policyctl.repo import Snapshot, snapshot
from policyctl.workers.child import say_hello, take_pipes
from policyctl.workers.frames import read_frame, write_frame

MAX_FRAME = 64 * 1024 * 1024
# Inputs remembered (one per rule-index key) to compile the next revision's programs
# before it goes live, so the first request after a swap does not pay for a compile.
MAX_SAMPLES = 64


def override_summaries(snap: Snapshot) -> list[dict[str, Any]]:
    """The override scripts of a snapshot as the status shows them, read without running them."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for path in snap.paths("overrides/", ".py"):
        try:
            header = parse_override_header(snap.text(path), file=path)
        except PolicyctlError as exc:
            out.append({"file": path, "mode": "invalid", "error": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - a header the parser did not foresee is that file's problem, never the status's
            out.append({"file": path, "mode": "invalid", "error": f"{path}: override_header: cannot be read "
                        f"({type(exc).__name__})"})
            continue
        out.append({"file": path, "name": header.name, "mode": "expired" if header.expired(now) else "active",
                    "priority": header.priority, "expires": header.expires.isoformat().replace("+00:00", "Z"),
                    "match": header.match, "doc": header.doc.splitlines()[0] if header.doc else ""})
    return out


class Evaluator:
    """The revisions this worker holds, by commit id, and the inputs it has seen."""

    def __init__(self) -> None:
        self.revisions: dict[str, Revision] = {}
        self.seen_keys: dict[str, set[tuple[Any, ...]]] = {}
        self.samples: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.failures_seen: dict[str, dict[str, int]] = {}
        self.quarantine_seen: dict[str, set[str]] = {}

    def decide(self, rev: str, input: Any) -> dict[str, Any]:
        revision = self.revisions.get(rev)
        if revision is None:
            return {"ok": False, "error": {"code": "revision_unavailable",
                                           "message": f"revision {rev[:12]} is not loaded in this worker"}}
        pipeline: Pipeline = revision.pipeline
        try:
            key = pipeline.policies.key(input)
        except Exception:  # noqa: BLE001 - a key is only a warm-up hint
            key = None
        seen = self.seen_keys[rev]
        if key is not None and key not in seen:
            seen.add(key)
            self.samples[orjson.dumps(key).decode()] = input
            while len(self.samples) > MAX_SAMPLES:
                self.samples.popitem(last=False)
        try:
            reply: dict[str, Any] = {"ok": True, "decision": pipeline.decide_dict(input)}
        except PolicyctlError as exc:
            reply = {"ok": False, "error": {"code": exc.code, "message": exc.message}}
        if pipeline.overrides is not None:
            failed = self._override_failures(rev, pipeline.overrides)
            if failed:
                reply["override_failures"] = failed
            quarantined = self._new_quarantines(rev, pipeline.overrides)
            if quarantined:
                reply["override_quarantined"] = quarantined
        return reply

    def _new_quarantines(self, rev: str, overrides: Any) -> list[dict[str, Any]]:
        """Overrides the sandbox quarantined since the last reply (each worker reports its own once)."""
        quarantined = getattr(overrides, "quarantined", None)
        if not isinstance(quarantined, dict) or not quarantined:
            return []
        seen = self.quarantine_seen.setdefault(rev, set())
        new = [q.to_dict() for name, q in list(quarantined.items()) if name not in seen]
        seen.update(q["name"] for q in new)
        return new

    def _override_failures(self, rev: str, overrides: Any) -> dict[str, int]:
        """Override runs that failed since the last reply, by code (the sandbox counts them)."""
        counts = getattr(overrides, "failures_by_code", None)
        if not isinstance(counts, dict):
            return {}
        seen = self.failures_seen.setdefault(rev, {})
        delta = {code: n - seen.get(code, 0) for code, n in counts.items() if n != seen.get(code, 0)}
        seen.update(counts)
        return delta

    def verify(self, rev: str, repo: str, inputs: list[Any] | None = None, baseline: str | None = None,
               budget_s: float = 2.0) -> dict[str, Any]:
        """Build `rev` and run its fixtures (the builder's job); nothing is kept.

        With `inputs` (recent traffic), also time evaluations of the fixtures and those inputs
        on `rev` and on `baseline` (the serving revision, built here once and kept), in this one
        process, so the gateway can refuse a commit that is correct but much slower.
        """
        started = time.perf_counter()
        try:
            revision = build_revision(snapshot(repo, rev), verify=True)
        except PolicyctlError as exc:
            return _failure(exc)
        try:
            timing: dict[str, Any] = {"verify_ms": round((time.perf_counter() - started) * 1e3, 1)}
            if inputs is not None:
                sample = [f.input for f in revision.fixtures] + list(inputs)
                timing["eval"] = _time_evaluations(revision, sample, budget_s)
                base = self._baseline(baseline, repo) if baseline else None
                if base is not None:
                    timing["baseline_eval"] = _time_evaluations(base, sample, budget_s)
            # The summary the gateway keeps is the builder's: only it says what the override workers'
            # kernel wall is (what its sandbox workers locked, or what the kernel would let them lock).
            return {"ok": True, "summary": {**self._summary(revision, timing), "sandbox_wall": _sandbox_wall()}}
        finally:
            _close_overrides(revision)

    def _baseline(self, rev: str, repo: str) -> Revision | None:
        """The serving revision, built in the builder for timing comparisons (only the last one is kept)."""
        held = self.revisions.get(rev)
        if held is not None:
            return held
        for old in [r for r in self.revisions if r != rev]:
            self.drop(old)
        try:
            self.revisions[rev] = build_revision(snapshot(repo, rev), verify=False)
        except PolicyctlError:
            return None  # no comparison; the candidate's own timing still counts against the deadline
        self.seen_keys[rev] = set()
        return self.revisions[rev]

    def load(self, rev: str, repo: str) -> dict[str, Any]:
        """Build `rev` (already verified by the builder), compile what traffic needs, and keep it."""
        if rev in self.revisions:
            return {"ok": True, "summary": self._summary(self.revisions[rev], {})}
        started = time.perf_counter()
        try:
            revision = build_revision(snapshot(repo, rev), verify=False)
        except PolicyctlError as exc:
            return _failure(exc)
        built = time.perf_counter()
        warmed = self._warm(revision)
        self.revisions[rev] = revision
        self.seen_keys[rev] = set()
        # A revision lives until it is dropped: keep its objects (and the imports) out of the
        # collector's full passes, which would otherwise stall a decision for milliseconds.
        gc.collect()
        gc.freeze()
        timing = {"build_ms": round((built - started) * 1e3, 1),
                  "warm_ms": round((time.perf_counter() - built) * 1e3, 1), "warmed": warmed}
        return {"ok": True, "summary": self._summary(revision, timing)}

    def _warm(self, revision: Revision) -> int:
        """Compile the programs that recent traffic and the fixtures need, before the swap."""
        policies = revision.pipeline.policies
        inputs = [f.input for f in revision.fixtures] + list(self.samples.values())
        keys: set[tuple[Any, ...]] = set()
        for input in inputs:
            try:
                key = policies.key(input)
                if key not in keys:
                    keys.add(key)
                    policies.program_for(input)
            except PolicyctlError:
                continue  # the request itself will report it, as a fail-closed decision
        return len(keys)

    def _summary(self, revision: Revision, timing: dict[str, Any]) -> dict[str, Any]:
        policies = revision.pipeline.policies
        snap = revision.snapshot
        return {
            "revision": revision.id,
            "committed_at": snap.committed_at.isoformat() if snap.committed_at else None,
            "policies": [{"file": m.file, "package": m.package, "mode": _mode(m), "title": m.title,
                          "cluster": m.cluster} for m in policies.modules],
            "overrides": override_summaries(snap),
            "fixtures": len(revision.fixtures),
            "fixtures_passed": sum(1 for r in revision.fixture_results if r.passed),
            "timing": timing,
        }

    def drop(self, rev: str) -> dict[str, Any]:
        revision = self.revisions.pop(rev, None)
        self.seen_keys.pop(rev, None)
        self.failures_seen.pop(rev, None)
        self.quarantine_seen.pop(rev, None)
        if revision is not None:
            _close_overrides(revision)
        return {"ok": True}

    def close(self) -> None:
        for rev in list(self.revisions):
            self.drop(rev)


def _sandbox_wall() -> dict[str, Any]:
    try:
        from policyctl.sandbox.wall import describe

        return describe()
    except Exception as exc:  # noqa: BLE001 - a status field must not fail a load
        return {"complete": False, "source": "error", "error": f"{type(exc).__name__}: {exc}"[:200]}


def _failure(exc: PolicyctlError) -> dict[str, Any]:
    problems = exc.problems[:50] if isinstance(exc, PolicyCompileError) else []
    return {"ok": False, "error": {"code": exc.code, "message": exc.message,
                                   "problems": [p.to_dict() for p in problems]}}


def _time_evaluations(revision: Revision, inputs: list[Any], budget_s: float) -> dict[str, Any]:
    """Per-input evaluation times on `revision`: the fastest of up to 3 rounds, so noise does not look slow.

    Each input's first evaluation compiles its program: a warm-up, not counted. Rounds stop
    when `budget_s` is spent, so a pathological commit cannot stall the verification.
    """
    pipeline = revision.pipeline
    best: list[float] = []
    started = time.perf_counter()
    for round_ in range(4):
        for i, input in enumerate(inputs):
            t = time.perf_counter()
            with contextlib.suppress(PolicyctlError):  # the fixtures already judged correctness
                pipeline.decide_dict(input)
            elapsed = time.perf_counter() - t
            if round_ == 0:
                best.append(elapsed)
            elif round_ == 1:
                best[i] = elapsed  # the warm-up's compile no longer counts
            else:
                best[i] = min(best[i], elapsed)
            if time.perf_counter() - started > budget_s:
                break
        else:
            continue
        break
    return {"inputs": len(inputs), "mean_ms": round(sum(best) / max(1, len(best)) * 1e3, 3),
            "max_ms": round(max(best, default=0.0) * 1e3, 3)}


def _mode(module: RegoModule) -> str:
    if module.is_rule:
        return module.mode
    return "entrypoint" if module.package == MAIN_PACKAGE else "library"


def _close_overrides(revision: Revision) -> None:
    close = getattr(revision.pipeline.overrides, "close", None)
    if callable(close):
        # Closing a sandbox must not take the worker down.
        with contextlib.suppress(Exception):
            close()


def handle(evaluator: Evaluator, op: str | None, message: dict[str, Any]) -> dict[str, Any]:
    if op == "decide":
        return evaluator.decide(message["rev"], message["input"])
    if op == "decide_many":  # a batch: one reply per input, in order
        return {"ok": True, "replies": [evaluator.decide(message["rev"], x) for x in message["inputs"]]}
    if op == "load":
        return evaluator.load(message["rev"], message["repo"])
    if op == "verify":
        return evaluator.verify(message["rev"], message["repo"], message.get("inputs"), message.get("baseline"),
                                float(message.get("budget_s", 2.0)))
    if op == "drop":
        return evaluator.drop(message["rev"])
    return {"ok": False, "error": {"code": "bad_request", "message": f"unknown op {op!r}"}}


def _encode(reply: dict[str, Any]) -> bytes:
    """A reply as JSON; a decision that is not JSON fails closed alone, not with the rest of its batch."""
    try:
        return orjson.dumps(reply)
    except TypeError as exc:
        if isinstance(reply.get("replies"), list):
            return b'{"ok":true,"replies":[' + b",".join(_encode(r) for r in reply["replies"]) + b"]}"
        return orjson.dumps({"ok": False, "error": {"code": "invalid_decision",
                                                    "message": f"the decision is not JSON: {exc}"}})


def main(argv: list[str] | None = None) -> int:
    """`python -m policyctl.gateway.evaluator`: `policyctl.workers` frames in on stdin, answers out on stdout.

    Anything else the process prints (a library banner, a stray print) goes to stderr, so it
    can never corrupt a frame.
    """
    in_fd, out_fd = take_pipes(keep_stderr=True)
    stdin = os.fdopen(in_fd, "rb")  # buffered: a small request is one read, not two
    evaluator = Evaluator()
    say_hello(out_fd)
    try:
        while True:
            frame = read_frame(stdin, MAX_FRAME)
            if frame is None:
                return 0  # the gateway went away
            message = orjson.loads(frame)
            op = message.get("op")
            if op == "exit":
                write_frame(out_fd, orjson.dumps({"ok": True}))
                return 0
            try:
                reply = handle(evaluator, op, message)
            except Exception as exc:  # noqa: BLE001 - one bad request must not cost the worker
                reply = {"ok": False, "error": {"code": "internal_error",
                                                "message": f"{type(exc).__name__}: {exc}"[:500]}}
            write_frame(out_fd, _encode(reply))
    finally:
        evaluator.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
