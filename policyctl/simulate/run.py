"""Run a world: agents send inputs, the decider answers, hidden faults decide the outcome, events are written.

Two random streams keep runs comparable across revisions. The traffic stream draws
timestamps, ids, inputs and every per-event roll, whatever the decisions are, so the
same seed sends the same inputs to any revision. The outcome details of an event
(message, variables, duration) come from a stream seeded per event, so a decision that
changes one event's outcome changes nothing else. An event whose route rewrote the agent's
intent is diverted without a fault or noise roll; its rolls are drawn all the same.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, islice
from pathlib import Path
from random import Random
from typing import IO, Any

import orjson

from policyctl.errors import InputError, PolicyctlError
from policyctl.model.records import FAILURES, STATUSES
from policyctl.model.values import merge_params, tag
from policyctl.simulate.deciders import Decider
from policyctl.simulate.select import collect
from policyctl.simulate.values import Path as InputPath
from policyctl.simulate.values import Scope
from policyctl.simulate.world import (
    DEFAULT_DURATIONS,
    NOISE_STATUSES,
    Fault,
    Interaction,
    Noise,
    World,
)

STATUS_ORDER = STATUSES
DIVERTED_CODE = "E_DIVERTED"
Progress = Callable[[int], None]


@dataclass
class Summary:
    """What a run produced: counts per status, fault, noise and decision."""

    world: str
    events: int = 0
    seed: int = 0
    revision: str | None = None
    decider: str = ""
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    noise: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    output: str = ""
    truth: str = ""

    @property
    def failures(self) -> int:
        return sum(self.statuses[s] for s in FAILURES)

    @property
    def failure_share(self) -> float:
        return self.failures / self.events if self.events else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"world": self.world, "events": self.events, "seed": self.seed, "revision": self.revision,
                "decider": self.decider, "failures": self.failures, "failure_share": round(self.failure_share, 4),
                "statuses": dict(self.statuses), "faults": dict(self.faults), "noise": self.noise,
                "actions": dict(self.actions), "seconds": round(self.seconds, 3), "output": self.output,
                "truth": self.truth}

    def render(self) -> str:
        """A plain-text report: events, the share of each status, each fault, the decisions."""
        n = max(self.events, 1)
        rev = (self.revision or "worktree")[:12]
        lines = [f"{self.events} events from world {self.world} (seed {self.seed}, revision {rev}, "
                 f"{self.decider}) in {self.seconds:.1f}s",
                 f"  written to {self.output}" + (f", truth in {self.truth}" if self.truth else ""), "",
                 f"  {'status':<12}{'events':>9}{'share':>9}"]
        for status in STATUS_ORDER:
            lines.append(f"  {status:<12}{self.statuses[status]:>9}{self.statuses[status] / n:>9.1%}")
        lines.append(f"  {'failures':<12}{self.failures:>9}{self.failure_share:>9.1%}")
        width = max([len(f) for f in self.faults] + [len("(noise)"), 10]) + 2
        lines += ["", f"  {'fault':<{width}}{'events':>9}{'share':>9}"]
        for name, count in self.faults.items():
            lines.append(f"  {name:<{width}}{count:>9}{count / n:>9.1%}")
        lines.append(f"  {'(noise)':<{width}}{self.noise:>9}{self.noise / n:>9.1%}")
        lines += ["", "  decisions: " + ", ".join(f"{a} {c}" for a, c in sorted(self.actions.items()))]
        return "\n".join(lines)


def _timestamp(ms: int) -> str:
    secs, milli = divmod(ms, 1000)
    t = time.gmtime(secs)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{milli:03d}Z")


def schedule(world: World, events: int, rng: Random, span: float) -> list[tuple[int, int]]:
    """(offset in ms, burst index or -1) for every event, in time order."""
    scale = span / world.span  # --span stretches the world's bursts with it
    bursts = [(b.at * scale, b.width * scale) for b in world.bursts]
    edges = list(accumulate(b.share for b in world.bursts))
    out: list[tuple[int, int]] = []
    for _ in range(events):
        u = rng.random()
        i = bisect_right(edges, u)
        if i < len(bursts):
            at, width = bursts[i]
            out.append((int((at + rng.random() * width) * 1000), i))
        else:
            out.append((int(rng.random() * span * 1000), -1))
    out.sort()
    return out


class _Picker:
    """Weighted choice of a traffic template, optionally among a burst's subset."""

    def __init__(self, traffic: list[Interaction], subset: tuple[int, ...] | None = None) -> None:
        self.items = [traffic[i] for i in subset] if subset is not None else list(traffic)
        self.cumulative = list(accumulate(t.weight for t in self.items))
        self.total = self.cumulative[-1]
        self.last = len(self.items) - 1

    def pick(self, rng: Random) -> Interaction:
        return self.items[min(bisect_right(self.cumulative, rng.random() * self.total), self.last)]


def _roll_fault(faults: list[Fault], original: dict[str, Any], attempted: dict[str, Any], action: str,
                u: float) -> Fault | None:
    """The fault that fires, if any: each matching fault in turn, as independent trials on one roll.

    A deny-only fault is tested on what the agent sent: no route escapes it.
    """
    for fault in faults:
        if fault.avoided_by and action in fault.avoided_by:
            continue
        if not fault.when(original if fault.deny_only else attempted):
            continue
        p = fault.probability
        if u < p:
            return fault
        u = (u - p) / (1.0 - p)
    return None


def _may_match_kind(fault: Fault, kind: str) -> bool:
    cond = fault.raw_when.get("kind")
    if isinstance(cond, str):
        return cond == kind
    if isinstance(cond, dict) and set(cond) == {"eq"}:
        return bool(cond["eq"] == kind)
    if isinstance(cond, dict) and set(cond) == {"in"} and isinstance(cond["in"], list):
        return kind in cond["in"]
    return True


def _diverted(intent: tuple[tuple[str, InputPath], ...], original: dict[str, Any],
              attempted: dict[str, Any]) -> dict[str, Any] | None:
    """The outcome of a route that rewrote the agent's intent, or None when every intent field is as sent."""
    changes = []
    for text, path in intent:
        before, after = collect(original, path), collect(attempted, path)
        if len(before) != len(after) or any(tag(a) != tag(b) for a, b in zip(before, after, strict=False)):
            changes.append(f"{text}: {_shown(before)} -> {_shown(after)}")
    if not changes:
        return None
    return {"status": "diverted", "message": f"route rewrote intent {'; '.join(changes)}; "
                                             "the interaction did not happen as asked",
            "code": DIVERTED_CODE, "duration_ms": 0}


def _shown(values: list[Any]) -> str:
    if not values:
        return "(absent)"
    if len(values) == 1 and isinstance(values[0], str):
        return values[0]
    value = values[0] if len(values) == 1 else values
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _denied(decision: dict[str, Any]) -> dict[str, Any]:
    reasons = decision.get("reasons") or []
    error = decision.get("error")
    if isinstance(error, dict):
        why = f"the policy set could not decide ({error.get('code')}: {error.get('message')})"
    elif reasons and isinstance(reasons[0], dict):
        why = f"{reasons[0].get('rule')}: {reasons[0].get('message')}"
    else:
        why = f"{decision.get('source')} decision"
    return {"status": "denied", "message": f"request denied by policy ({why})", "code": "DENIED", "duration_ms": 0}


class _Outcomes:
    """Renders the outcome of an attempt that failed, from a per-event random stream."""

    def __init__(self, world: World) -> None:
        self.rng = Random(0)
        self.default_durations = {s: _default_gen(s) for s in NOISE_STATUSES}
        self.noise: Noise | None = world.noise

    def fault(self, fault: Fault, attempted: dict[str, Any], seed: int) -> tuple[dict[str, Any], list[str]]:
        rng = self.rng
        rng.seed(seed)
        scope = Scope(attempted, rng, fault.vars)
        message = fault.messages.pick(rng)
        duration = fault.duration.draw(rng, scope)
        code_gen = message.code or fault.code
        code = code_gen.draw(rng, scope) if code_gen is not None else None
        scope.cache.update(duration_ms=duration, code=code, status=fault.status)
        outcome: dict[str, Any] = {"status": fault.status}
        if fault.status == "deadlock":
            waits = self._waits_for(fault, attempted, scope)
            if waits:
                scope.cache["agent"], scope.cache["other"] = waits[0]["agent"], waits[0]["held_by"]
                roles = {a.get("id"): a.get("role", "") for a in attempted.get("agents") or []}
                scope.cache["role"] = roles.get(waits[0]["agent"], "")
        else:
            waits = None
        outcome["message"] = message.template.render(scope)
        outcome["code"] = code
        outcome["duration_ms"] = duration
        if waits is not None:
            outcome["waits_for"] = waits
        trace = [t.render(scope) for t in (message.trace if message.trace is not None else fault.trace)]
        return outcome, trace

    def _waits_for(self, fault: Fault, attempted: dict[str, Any], scope: Scope) -> list[dict[str, Any]]:
        # A cycle: each agent waits for a lock the next one holds; the locks taken in turn.
        ids = [str(a.get("id")) for a in attempted.get("agents") or [] if isinstance(a, dict)]
        if len(ids) < 2:
            return []
        scope.rng.shuffle(ids)
        locks = [t.render(scope) for t in fault.locks]
        return [{"agent": a, "resource": locks[i % len(locks)], "held_by": ids[(i + 1) % len(ids)]}
                for i, a in enumerate(ids)]

    def noise_outcome(self, attempted: dict[str, Any], seed: int) -> tuple[dict[str, Any], list[str]]:
        noise = self.noise
        assert noise is not None
        rng = self.rng
        rng.seed(seed)
        scope = Scope(attempted, rng, noise.vars)
        message = noise.messages.pick(rng)
        status = message.status or noise.status.draw(rng, scope)
        duration_gen = noise.duration or self.default_durations[status]
        duration = duration_gen.draw(rng, scope)
        code_gen = message.code or noise.code
        code = code_gen.draw(rng, scope) if code_gen is not None else None
        scope.cache.update(duration_ms=duration, code=code, status=status)
        outcome = {"status": status, "message": message.template.render(scope), "code": code, "duration_ms": duration}
        trace = [t.render(scope) for t in message.trace] if message.trace else []
        return outcome, trace


def _default_gen(status: str) -> Any:
    from policyctl.simulate.values import Compiler, Namespace

    return Compiler(Namespace()).value(DEFAULT_DURATIONS[status])


@dataclass(slots=True)
class Planned:
    """One event as the traffic stream draws it, before any decision."""

    hex_id: str
    now_ms: int
    interaction: Interaction
    input: dict[str, Any]
    fault_roll: float
    noise_roll: float
    detail_seed: int


def traffic(world: World, *, events: int, seed: int, start_ms: int | None = None,
            span: float | None = None) -> Iterator[Planned]:
    """The traffic stream: ids, times, inputs and rolls, the same for every revision."""
    if events < 0:
        raise InputError(f"--events must be 0 or more, got {events}")
    rng = Random(seed)
    span = world.span if span is None else span
    start = int(world.start.timestamp() * 1000) if start_ms is None else start_ms
    plan = schedule(world, events, rng, span)
    default = _Picker(world.traffic)
    by_burst = [_Picker(world.traffic, b.traffic) if b.traffic is not None else default for b in world.bursts]
    seen_ids: set[int] = set()
    for offset, burst in plan:
        number = rng.getrandbits(48)
        while number in seen_ids:
            number = rng.getrandbits(48)
        seen_ids.add(number)
        interaction = (by_burst[burst] if burst >= 0 else default).pick(rng)
        input = interaction.build(rng)
        yield Planned(f"{number:012x}", start + offset, interaction, input, rng.random(), rng.random(),
                      rng.getrandbits(64))


BATCH = 256


def _decided(stream: Iterator[Planned], decider: Decider, where: str) -> Iterator[tuple[Planned, dict[str, Any]]]:
    """Each planned event with its decision, decided in batches.

    Deciding a batch back to back keeps the policy engine's working set in the CPU caches,
    and then the simulator's; interleaved one by one, each evicts the other's.
    """
    while True:
        batch = list(islice(stream, BATCH))
        if not batch:
            return
        decisions = []
        for planned in batch:
            try:
                decisions.append(decider.decide(planned.input, planned.now_ms, f"dec-{planned.hex_id}"))
            except InputError as exc:
                raise InputError(f"{where}: traffic {planned.interaction.name!r} sent an input the pipeline "
                                 f"refuses: {exc}") from exc
        yield from zip(batch, decisions, strict=True)


def simulate(world: World, decider: Decider, *, events: int, seed: int, out: IO[bytes], truth: IO[bytes] | None,
             start_ms: int | None = None, span: float | None = None, progress: Progress | None = None) -> Summary:
    """Write `events` Event lines to `out` and their ground truth to `truth`; return the counts."""
    began = time.perf_counter()
    # Most faults name the input kind they hit: test only those that can match.
    by_kind = {kind: [f for f in world.faults if _may_match_kind(f, kind)] for kind in ("action", "conflict")}
    noise_rate = world.noise.rate if world.noise is not None else 0.0
    outcomes = _Outcomes(world)
    summary = Summary(world=world.name, seed=seed, decider=decider.label)
    statuses, fault_counts, actions = summary.statuses, summary.faults, summary.actions
    for f in world.faults:
        fault_counts[f.name] = 0
    dumps = orjson.dumps
    write, write_truth = out.write, (truth.write if truth is not None else None)
    done = 0

    for planned, decision in _decided(traffic(world, events=events, seed=seed, start_ms=start_ms, span=span),
                                      decider, world.file):
        input, hex_id, now = planned.input, planned.hex_id, planned.now_ms
        action = str(decision.get("action"))
        actions[action] += 1
        params = decision.get("params")
        logged: dict[str, Any] = {"decision_id": decision.get("decision_id"), "action": action,
                                  "source": decision.get("source"), "revision": decision.get("revision")}
        if params:
            logged["params"] = params
        if decision.get("reasons"):
            logged["reasons"] = decision["reasons"]
        if decision.get("error"):
            logged["error"] = decision["error"]

        fired: Fault | None = None
        is_noise = False
        trace: list[str] = []
        route = params if action == "route" and isinstance(params, dict) else None
        # Faults see what is attempted: a route's params change the attempt, not the logged input.
        attempted = merge_params(input, route) if route is not None else input
        # A route that rewrites the agent's intent does something else than asked: no fault or noise is
        # rolled for it, and the rolls it leaves unused keep every other event as it would be.
        diverted = _diverted(planned.interaction.intent, input, attempted) if route is not None else None
        if action == "deny":
            outcome = _denied(decision)
        elif diverted is not None:
            outcome = diverted
        else:
            same_kind = attempted is input or attempted.get("kind") == input.get("kind")
            faults = by_kind.get(str(input.get("kind")), world.faults) if same_kind else world.faults
            fired = _roll_fault(faults, input, attempted, action, planned.fault_roll) if faults else None
            if fired is not None:
                outcome, trace = outcomes.fault(fired, attempted, planned.detail_seed)
                fault_counts[fired.name] += 1
            elif planned.noise_roll < noise_rate:
                outcome, trace = outcomes.noise_outcome(attempted, planned.detail_seed)
                is_noise = True
                summary.noise += 1
            else:
                outcome = _ok(planned.interaction, attempted, outcomes.rng, planned.detail_seed)
        statuses[outcome["status"]] += 1

        event_id = f"evt-{hex_id}"
        event: dict[str, Any] = {"id": event_id, "ts": _timestamp(now), "input": input, "decision": logged,
                                 "outcome": outcome, "revision": decision.get("revision")}
        if trace:
            event["trace"] = trace
        write(dumps(event))
        write(b"\n")
        if write_truth is not None:
            write_truth(dumps({"id": event_id, "fault": fired.name if fired is not None else None,
                               "noise": is_noise}))
            write_truth(b"\n")
        done += 1
        if progress is not None and done % 250 == 0:
            progress(done)

    summary.events = done
    summary.revision = decider.revision
    summary.seconds = time.perf_counter() - began
    if progress is not None:
        progress(done)
    return summary


def _ok(interaction: Interaction, attempted: dict[str, Any], rng: Random, seed: int) -> dict[str, Any]:
    rng.seed(seed)
    scope = Scope(attempted, rng, interaction.vars)
    duration = interaction.duration.draw(rng, scope)
    message = ""
    if interaction.messages is not None:
        scope.cache.update(duration_ms=duration, code=None, status="ok")
        message = interaction.messages.pick(rng).template.render(scope)
    return {"status": "ok", "message": message, "code": None, "duration_ms": duration}


def truth_path(output: Path) -> Path:
    """events.jsonl -> events.truth.jsonl, beside it."""
    name = output.name
    stem = name[:-len(".jsonl")] if name.endswith(".jsonl") else name
    return output.with_name(f"{stem}.truth.jsonl")


def run_to_files(world: World, decider: Decider, *, events: int, seed: int, output: Path, truth: Path | None = None,
                 start_ms: int | None = None, span: float | None = None,
                 progress: Progress | None = None) -> Summary:
    """simulate() into `output` and its truth sidecar, each written whole or not at all."""
    truth = truth if truth is not None else truth_path(output)
    if truth.resolve() == output.resolve():
        raise InputError(f"{output}: the truth sidecar cannot be the output file itself")
    tmp_out = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp_truth = truth.with_name(f".{truth.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_out, "wb") as out, open(tmp_truth, "wb") as sidecar:
            summary = simulate(world, decider, events=events, seed=seed, out=out, truth=sidecar,
                               start_ms=start_ms, span=span, progress=progress)
        os.replace(tmp_out, output)
        os.replace(tmp_truth, truth)
    except OSError as exc:
        raise PolicyctlError(f"{exc.filename or output}: cannot write ({exc.strerror})", code="io_error") from exc
    finally:
        for tmp in (tmp_out, tmp_truth):
            if tmp.exists():
                tmp.unlink()
    summary.output, summary.truth = str(output), str(truth)
    return summary
