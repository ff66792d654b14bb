"""World files: load the YAML, validate it against the shipped schema and beyond, compile it for the run."""

from __future__ import annotations

import difflib
import json
import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from itertools import accumulate
from pathlib import Path as FilePath
from random import Random
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError

from policyctl.errors import InputError, ValidationError
from policyctl.model.schema import format_path
from policyctl.simulate.select import Predicate, check_sent, compile_when, input_path
from policyctl.simulate.values import (
    Compiler,
    Gen,
    Namespace,
    ObjectGen,
    Path,
    Scope,
    SpecError,
    Template,
    compile_template,
    const,
)

FAULT_STATUSES = ("crash", "deadlock", "timeout", "error")
NOISE_STATUSES = ("crash", "timeout", "error")
DEFAULT_START = "2026-03-30T00:00:00Z"
DEFAULT_SPAN = 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# What a failure takes when the world does not say: a crash is quick, a timeout waits for its limit.
DEFAULT_DURATIONS: dict[str, Any] = {
    "ok": {"lognormal": {"median": 180, "sigma": 0.9}, "min": 1, "max": 600000},
    "crash": {"lognormal": {"median": 900, "sigma": 1.0}, "min": 5, "max": 600000},
    "error": {"lognormal": {"median": 120, "sigma": 0.8}, "min": 1, "max": 60000},
    "timeout": {"uniform": [30000, 30999]},
    "deadlock": {"uniform": [60000, 61999]},
}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a text such as 500ms, 90s, 45m, 2d6h, 1w; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if text[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos == 0 or text[pos:].strip():
        raise ValueError(f"{value!r} is not a duration (write e.g. 500ms, 90s, 45m, 2d6h, 1w)")
    return total


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with a zone, as UTC; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or +00:00)")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- the compiled world


@dataclass(frozen=True)
class Message:
    template: Template
    code: Gen | None = None
    status: str | None = None
    trace: tuple[Template, ...] | None = None


@dataclass
class Messages:
    """Message templates with weights; one is picked per event."""

    items: list[Message]
    cumulative: list[float]

    def pick(self, rng: Random) -> Message:
        if len(self.items) == 1:
            return self.items[0]
        i = bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.items[min(i, len(self.items) - 1)]


@dataclass
class Interaction:
    """One traffic template: who takes part, the input fields, how long a success takes."""

    name: str
    weight: float
    kind: str
    role: Gen
    count: Gen
    by_role: dict[str, list[dict[str, Any]]]
    pool: list[dict[str, Any]]
    fields: list[tuple[str, Gen | ObjectGen]]
    duration: Gen
    messages: Messages | None
    vars: dict[str, Gen]
    # The agent's intent: (dotted path, parsed path) of the fields a route may not rewrite.
    intent: tuple[tuple[str, Path], ...] = ()

    def build(self, rng: Random) -> dict[str, Any]:
        """A fresh input; constant parts are shared between inputs and never mutated."""
        agents = self._agents(rng)
        input: dict[str, Any] = {"kind": self.kind, "agents": agents}
        scope = Scope(input, rng, self.vars)
        for key, gen in self.fields:
            if isinstance(gen, ObjectGen):
                child: dict[str, Any] = {}
                input[key] = child
                gen.fill(child, rng, scope)
            else:
                input[key] = gen.draw(rng, scope)
        return input

    def _agents(self, rng: Random) -> list[dict[str, Any]]:
        n = self.count.draw(rng, _NO_SCOPE)
        n = max(1, min(int(n), len(self.pool)))
        if n == 1:
            agents = self.by_role[self.role.draw(rng, _NO_SCOPE)]
            return [agents[int(rng.random() * len(agents))]]
        chosen: list[dict[str, Any]] = []
        ids: set[str] = set()
        for _ in range(n):
            for _attempt in range(8):
                agents = self.by_role[self.role.draw(rng, _NO_SCOPE)]
                agent = agents[int(rng.random() * len(agents))]
                if agent["id"] not in ids:
                    break
            else:
                # The drawn roles keep colliding: take any free agent of the allowed roles.
                free = [a for a in self.pool if a["id"] not in ids]
                agent = free[int(rng.random() * len(free))]
            chosen.append(agent)
            ids.add(agent["id"])
        return chosen


_NO_SCOPE = Scope({}, Random(0), {})


@dataclass
class Fault:
    """A hidden systemic fault: which inputs fail, how often, how it reads in the log."""

    name: str
    when: Predicate
    when_paths: list[str]
    probability: float
    status: str
    code: Gen | None
    duration: Gen
    avoided_by: frozenset[str]
    deny_only: bool  # `avoided_by: [deny]`: tested on the original input, avoided by nothing but a deny
    locks: tuple[Template, ...]
    messages: Messages
    trace: tuple[Template, ...]
    vars: dict[str, Gen]
    description: str = ""
    raw_when: dict[str, Any] = field(default_factory=dict)


@dataclass
class Noise:
    rate: float
    status: Gen
    code: Gen | None
    duration: Gen | None
    messages: Messages
    vars: dict[str, Gen]


@dataclass(frozen=True)
class Burst:
    at: float
    width: float
    share: float
    traffic: tuple[int, ...] | None


@dataclass
class World:
    """A compiled world, ready to run. `file` is where it was loaded from (for messages)."""

    name: str
    description: str
    file: str
    agents: list[dict[str, Any]]
    traffic: list[Interaction]
    faults: list[Fault]
    noise: Noise | None
    start: datetime
    span: float
    bursts: list[Burst]
    vars: dict[str, Gen]
    input_paths: frozenset[str]
    raw: dict[str, Any]
    intent: tuple[str, ...] = ()


# --------------------------------------------------------------------------- YAML with line numbers


class _Loader(yaml.SafeLoader):
    """Safe YAML without timestamps (times stay text, as in JSON) and with YAML 1.2 floats (2e9)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _parse_yaml(text: str, name: str) -> tuple[Any, yaml.Node | None]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_duplicates(node, (), name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ValidationError(f"not valid YAML ({exc.problem or exc.context})", where=where) from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"not valid YAML ({exc})", where=name) from exc
    finally:
        loader.dispose()
    return data, node


def _check_duplicates(node: yaml.Node, path: Path, name: str) -> None:
    # PyYAML keeps the last of two equal keys silently; a world author loses a condition that way.
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else None
            if k is not None and k in seen:
                raise ValidationError(f"key {k!r} appears twice (also on line {seen[k]}); keep one",
                                      path=format_path((*path, k)), where=f"{name}:{key.start_mark.line + 1}")
            if k is not None:
                seen[k] = key.start_mark.line + 1
            _check_duplicates(value, (*path, k if k is not None else "?"), name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, (*path, i), name)


def _line(node: yaml.Node | None, path: Path) -> int | None:
    """The line of the deepest node of `path` that exists in the file."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    # A bad key is reported at the key, a bad value at the value.
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        line = node.start_mark.line + 1
    return line


# --------------------------------------------------------------------------- schema


@cache
def world_schema() -> dict[str, Any]:
    """The JSON Schema of world files, shipped in the package."""
    text = resources.files("policyctl.simulate").joinpath("world.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(world_schema(), format_checker=FormatChecker())


def _schema_error(err: SchemaError) -> tuple[Path, str]:
    path: Path = tuple(err.absolute_path)
    value = err.instance
    if err.validator == "additionalProperties" and isinstance(value, dict):
        allowed = list(err.schema.get("properties", {}))
        extra = sorted(k for k in value if k not in allowed)
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(allowed)}"
        return (*path, key), f"unknown field ({hint})"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "?"
        return (*path, missing), "required field is missing"
    if err.validator == "enum":
        return path, f"{_short(value)} is not one of: {', '.join(map(str, err.validator_value))}"
    if err.validator == "const":
        return path, f"{_short(value)} is not supported (only {err.validator_value})"
    if err.validator == "type" and isinstance(value, list) and len(path) >= 2 and path[-2] == "when":
        return path, f"a list is not a condition; for one of several values write {{in: {_short(value)}}}"
    if err.validator == "type":
        wanted = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return path, f"expected {wanted}, got {_json_type(value)} {_short(value)}"
    if err.validator == "pattern":
        if "ms|s|m|h|d|w" in str(err.validator_value):
            return path, f"{_short(value)} is not a duration (write e.g. 500ms, 90s, 45m, 2d6h, 1w)"
        if "propertyNames" in err.schema_path:
            return path, f"{_short(value)} is not a variable name (letters, digits, _; not starting with a digit)"
        return path, f"{_short(value)} is not a valid name (letters, digits, '-', '_', '.')"
    if err.validator == "minItems" and isinstance(value, list):
        return path, f"needs at least {err.validator_value} item{'s' if err.validator_value != 1 else ''}, got {len(value)}"
    if err.validator == "uniqueItems" and isinstance(value, list):
        twice = next((v for i, v in enumerate(value) if v in value[:i]), "?")
        return path, f"{_short(twice)} is listed twice; keep one"
    if err.validator == "format":
        return path, f"{_short(value)} is not an RFC 3339 time (e.g. {DEFAULT_START})"
    return path, err.message


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _first_schema_error(data: Any) -> tuple[Path, str] | None:
    errors = list(_validator().iter_errors(data))
    if not errors:
        return None
    # The deepest error is the most specific; an unknown field explains a "missing" one beside it.
    errors.sort(key=lambda e: (-len(e.absolute_path), e.validator != "additionalProperties",
                               [str(p) for p in e.absolute_path], e.message))
    return _schema_error(errors[0])


# --------------------------------------------------------------------------- loading


def shipped_worlds() -> list[str]:
    """The names of the worlds shipped with policyctl (`demo`, …)."""
    folder = resources.files("policyctl.simulate").joinpath("worlds")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def world_source(spec: str) -> tuple[str, str]:
    """(display name, YAML text) for a file path or a shipped world's name."""
    path = FilePath(spec)
    if path.is_file():
        try:
            return str(spec), path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{spec}: cannot read ({exc})") from exc
    names = shipped_worlds()
    if spec in names:
        text = resources.files("policyctl.simulate").joinpath(f"worlds/{spec}.yaml").read_text("utf-8")
        return f"{spec}.yaml", text
    if path.suffix in (".yaml", ".yml") or "/" in spec:
        raise InputError(f"{spec}: no such file (shipped worlds: {', '.join(names)})")
    raise InputError(f"no world named {spec!r}: pass a YAML file or one of: {', '.join(names)}")


def load_world(spec: str) -> World:
    """Load and compile a world from a file path or a shipped name; errors name file:line and field."""
    name, text = world_source(spec)
    return parse_world(text, name)


def parse_world(text: str, name: str = "<world>") -> World:
    data, node = _parse_yaml(text, name)
    if not isinstance(data, dict):
        raise ValidationError(f"a world file is a mapping (world:, agents:, traffic:, …), got {_json_type(data)}",
                              where=name)
    found = _first_schema_error(data)
    if found is not None:
        path, message = found
        raise _located(name, node, path, message)
    try:
        return _compile(data, name)
    except SpecError as exc:
        raise _located(name, node, exc.path, exc.message) from None


def _located(name: str, node: yaml.Node | None, path: Path, message: str) -> ValidationError:
    line = _line(node, path)
    return ValidationError(message, path=format_path(path), where=f"{name}:{line}" if line else name)


def _compile(data: dict[str, Any], name: str) -> World:
    world_vars_raw = data.get("vars") or {}
    base = Compiler(Namespace(vars=frozenset(world_vars_raw)))
    world_vars = {k: base.value(v, ("vars", k)) for k, v in world_vars_raw.items()}
    _check_var_cycles(world_vars_raw, ("vars",))

    agents, by_role = _compile_agents(data["agents"])
    traffic: list[Interaction] = []
    input_paths: set[str] = {"kind"}
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["traffic"]):
        _unique(seen, raw["name"], ("traffic", i, "name"))
        interaction, paths = _compile_interaction(raw, ("traffic", i), by_role, agents, world_vars)
        traffic.append(interaction)
        input_paths |= paths
    known = frozenset(input_paths)
    intent = _compile_intent(data.get("intent") or [], ("intent",), known)
    for interaction in traffic:
        # The world's intent first, then the item's own; a path in both counts once.
        interaction.intent = tuple(dict.fromkeys((*intent, *interaction.intent)))

    faults: list[Fault] = []
    seen = {}
    for i, raw in enumerate(data.get("faults") or []):
        _unique(seen, raw["name"], ("faults", i, "name"))
        faults.append(_compile_fault(raw, ("faults", i), known, world_vars))
    noise = _compile_noise(data["noise"], ("noise",), known, world_vars) if data.get("noise") else None

    start_text = (data.get("time") or {}).get("start", DEFAULT_START)
    try:
        start = parse_time(start_text)
    except ValueError as exc:
        raise SpecError(("time", "start"), f"{start_text!r} is not an RFC 3339 time ({exc})") from None
    span = parse_duration((data.get("time") or {}).get("span", DEFAULT_SPAN))
    if span <= 0:
        raise SpecError(("time", "span"), "the span must be longer than 0")
    bursts = _compile_bursts((data.get("time") or {}).get("bursts") or [], span, [t.name for t in traffic])
    return World(name=data["world"], description=data.get("description", ""), file=name, agents=agents,
                 traffic=traffic, faults=faults, noise=noise, start=start, span=span, bursts=bursts,
                 vars=world_vars, input_paths=known, raw=data, intent=tuple(text for text, _ in intent))


def _compile_intent(raw: list[Any], path: Path, sent: frozenset[str],
                    sender: str = "no traffic sends") -> list[tuple[str, Path]]:
    """The intent paths of a list, each a field that the traffic sends."""
    out: list[tuple[str, Path]] = []
    for j, text in enumerate(raw):
        where: Path = (*path, j)
        parsed = input_path(text, where)
        check_sent(text, sent, where, sender)
        out.append((text, parsed))
    return out


def _unique(seen: dict[str, int], value: str, path: Path) -> None:
    if value in seen:
        raise SpecError(path, f"the name {value!r} is already used by item {seen[value]}")
    seen[value] = int(path[1])


def _check_var_cycles(raw: dict[str, Any], base: Path) -> None:
    refs = {k: set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)", json.dumps(v))) & set(raw) for k, v in raw.items()}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        for ref in sorted(refs[name]):
            if ref in stack or ref == name:
                chain = " -> ".join((*stack, name, ref))
                raise SpecError((*base, stack[0] if stack else name), f"vars refer to each other in a loop: {chain}")
            visit(ref, (*stack, name))
    for name in raw:
        visit(name, ())


def _compile_agents(raw_agents: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    # The population is part of the world, not of a run: the same ids and priorities for every seed.
    rng = Random(0)
    agents: list[dict[str, Any]] = []
    by_role: dict[str, list[dict[str, Any]]] = {}
    ids: dict[str, Path] = {}
    for i, raw in enumerate(raw_agents):
        role = raw["role"]
        path: Path = ("agents", i)
        if role in by_role:
            raise SpecError((*path, "role"), f"role {role!r} is declared twice; give one entry a larger count")
        pattern = raw.get("id", "{role}-{n}")
        namespace = Namespace(vars=frozenset({"n", "role"}), input_paths=frozenset())
        id_template = compile_template(pattern, namespace, _error_at((*path, "id")))
        if raw["count"] > 1 and "n" not in id_template.names:
            raise SpecError((*path, "id"), f"{pattern!r} gives every one of the {raw['count']} agents the same id; add {{n}}")
        compiler = Compiler(Namespace(vars=frozenset({"n", "role"}), input_paths=frozenset()))
        priority = compiler.value(raw["priority"], (*path, "priority")) if "priority" in raw else None
        extra = raw.get("fields") or {}
        extra_gens = {k: compiler.value(v, (*path, "fields", k)) for k, v in extra.items()}
        for reserved in ("id", "role", "priority"):
            if reserved in extra_gens:
                raise SpecError((*path, "fields", reserved), f"{reserved} is set by the agent entry itself")
        members = []
        for n in range(1, raw["count"] + 1):
            scope = Scope({}, rng, {}, {"n": n, "role": role})
            agent: dict[str, Any] = {"id": id_template.render(scope), "role": role}
            if priority is not None:
                agent["priority"] = priority.draw(rng, scope)
            for key, gen in extra_gens.items():
                agent[key] = gen.draw(rng, scope)
            if agent["id"] in ids:
                raise SpecError((*path, "id"), f"agent id {agent['id']!r} is also given by {format_path(ids[agent['id']])}")
            ids[agent["id"]] = path
            members.append(agent)
        by_role[role] = members
        agents.extend(members)
    return agents, by_role


def _compile_interaction(raw: dict[str, Any], path: Path, by_role: dict[str, list[dict[str, Any]]],
                         agents: list[dict[str, Any]], world_vars: dict[str, Gen]) -> tuple[Interaction, set[str]]:
    kind = raw.get("kind", "action")
    if kind == "action" and "action" not in raw:
        raise SpecError((*path, "action"), "an action interaction needs action: {type: …}")
    action = raw.get("action")
    if kind == "action" and isinstance(action, dict) and "type" not in action:
        raise SpecError((*path, "action", "type"), "required field is missing (what the agent does, e.g. file_share)")
    local_raw = raw.get("vars") or {}
    _check_var_cycles(local_raw, (*path, "vars"))
    names = frozenset(world_vars) | frozenset(local_raw)
    agents_path = (*path, "agents")
    plain = Compiler(Namespace(vars=names, input_paths=frozenset()))
    role = plain.value(raw["agents"]["role"], (*agents_path, "role"))
    roles = role.choices
    if roles is None:
        raise SpecError((*agents_path, "role"), "a role is a name or a {choice: [names]}")
    for r in roles:
        if r not in by_role:
            raise SpecError((*agents_path, "role"), f"unknown role {r!r} (roles: {', '.join(by_role)})")
    pool = [a for r in dict.fromkeys(roles) for a in by_role[r]]
    default_count = 2 if kind == "conflict" else 1
    count = plain.value(raw["agents"].get("count", default_count), (*agents_path, "count"))
    if count.bounds is None:
        raise SpecError((*agents_path, "count"), "a count is a number, a choice of numbers or a uniform range")
    low, high = count.bounds
    if low < 1 or (kind == "conflict" and low < 2):
        need = 2 if kind == "conflict" else 1
        raise SpecError((*agents_path, "count"), f"can draw {low:g} agents; a {kind} needs at least {need}")
    if high > len(pool):
        raise SpecError((*agents_path, "count"), f"can draw {high:g} agents but only {len(pool)} agents "
                                                 f"have the role{'s' if len(set(roles)) > 1 else ''} {', '.join(dict.fromkeys(map(str, roles)))}")

    # Agents come first, so every field may read them; then the fields in the order written.
    generated: set[str] = {"kind", "agents", "agents.id", "agents.role"}
    for a in pool:
        generated.update(f"agents.{k}" for k in a)
    compiler = Compiler(Namespace(vars=names), generated)
    local = {k: compiler.value(v, (*path, "vars", k)) for k, v in local_raw.items()}
    fields: list[tuple[str, Gen | ObjectGen]] = []
    for key in ("action", "resource", "context"):
        if key in raw:
            fields.append((key, compiler.field(raw[key], (*path, key), key)))
    outcome = Compiler(Namespace(vars=names, input_paths=frozenset(generated), outcome=True))
    duration = outcome.value(raw.get("duration_ms", DEFAULT_DURATIONS["ok"]), (*path, "duration_ms"))
    messages = (_compile_messages(raw["messages"], (*path, "messages"), outcome, allow_status=False)
                if raw.get("messages") else None)
    intent = _compile_intent(raw.get("intent") or [], (*path, "intent"), frozenset(generated),
                             f"traffic {raw['name']!r} does not send")
    interaction = Interaction(name=raw["name"], weight=float(raw["weight"]), kind=kind, role=role, count=count,
                              by_role=by_role, pool=pool, fields=fields, duration=duration, messages=messages,
                              vars={**world_vars, **local}, intent=tuple(intent))
    return interaction, generated


def _compile_messages(raw: list[Any], path: Path, compiler: Compiler, *, allow_status: bool) -> Messages:
    items: list[Message] = []
    weights: list[float] = []
    for i, entry in enumerate(raw):
        where: Path = (*path, i)
        if isinstance(entry, str):
            entry = {"text": entry}
        if "status" in entry and not allow_status:
            raise SpecError((*where, "status"), "a message's status is for noise only; a fault has one status")
        text_path = where if isinstance(raw[i], str) else (*where, "text")
        template = compile_template(entry["text"], compiler.namespace, _error_at(text_path))
        code = compiler.value(entry["code"], (*where, "code")) if "code" in entry else None
        trace = (tuple(_templates(entry["trace"], (*where, "trace"), compiler)) if "trace" in entry else None)
        items.append(Message(template, code, entry.get("status"), trace))
        weights.append(float(entry.get("weight", 1.0)))
    return Messages(items, list(accumulate(weights)))


def _templates(lines: list[str], path: Path, compiler: Compiler) -> list[Template]:
    return [compile_template(line, compiler.namespace, _error_at((*path, i))) for i, line in enumerate(lines)]


def _error_at(path: Path) -> Callable[[str], SpecError]:
    return lambda message: SpecError(path, message)


def _compile_fault(raw: dict[str, Any], path: Path, known: frozenset[str], world_vars: dict[str, Gen]) -> Fault:
    local_raw = raw.get("vars") or {}
    _check_var_cycles(local_raw, (*path, "vars"))
    names = frozenset(world_vars) | frozenset(local_raw)
    compiler = Compiler(Namespace(vars=names, input_paths=known, outcome=True))
    local = {k: compiler.value(v, (*path, "vars", k)) for k, v in local_raw.items()}
    when, when_paths = compile_when(raw["when"], known, (*path, "when"))
    status = raw["status"]
    if status == "deadlock":
        kind = raw["when"].get("kind")
        if kind != "conflict" and kind != {"eq": "conflict"}:
            raise SpecError((*path, "when"), "a deadlock needs agents that contend: add `kind: conflict` to when")
    elif "locks" in raw:
        raise SpecError((*path, "locks"), f"locks say who waits for whom in a deadlock; this fault is a {status}")
    locks = tuple(_templates(raw.get("locks") or ["{resource}"], (*path, "locks"), compiler))
    duration = compiler.value(raw.get("duration_ms", DEFAULT_DURATIONS[status]), (*path, "duration_ms"))
    code = compiler.value(raw["code"], (*path, "code")) if "code" in raw else None
    avoided_by = frozenset(raw.get("avoided_by") or ())
    if "deny" in avoided_by and len(avoided_by) > 1:
        raise SpecError((*path, "avoided_by"), "deny means that nothing but a deny avoids the fault; "
                                               "write avoided_by: [deny] alone")
    return Fault(name=raw["name"], when=when, when_paths=when_paths, probability=float(raw["probability"]),
                 status=status, code=code, duration=duration, avoided_by=avoided_by,
                 deny_only=avoided_by == {"deny"}, locks=locks,
                 messages=_compile_messages(raw["messages"], (*path, "messages"), compiler, allow_status=False),
                 trace=tuple(_templates(raw.get("trace") or [], (*path, "trace"), compiler)),
                 vars={**world_vars, **local}, description=raw.get("description", ""), raw_when=raw["when"])


def _compile_noise(raw: dict[str, Any], path: Path, known: frozenset[str], world_vars: dict[str, Gen]) -> Noise:
    local_raw = raw.get("vars") or {}
    _check_var_cycles(local_raw, (*path, "vars"))
    compiler = Compiler(Namespace(vars=frozenset(world_vars) | frozenset(local_raw), input_paths=known, outcome=True))
    local = {k: compiler.value(v, (*path, "vars", k)) for k, v in local_raw.items()}
    status = compiler.value(raw.get("status", "error"), (*path, "status"))
    if status.choices is None or any(s not in NOISE_STATUSES for s in status.choices):
        raise SpecError((*path, "status"), f"noise status is one of {', '.join(NOISE_STATUSES)} "
                                           "(or a choice of them)")
    return Noise(rate=float(raw["rate"]), status=status,
                 code=compiler.value(raw["code"], (*path, "code")) if "code" in raw else None,
                 duration=compiler.value(raw["duration_ms"], (*path, "duration_ms")) if "duration_ms" in raw else None,
                 messages=_compile_messages(raw["messages"], (*path, "messages"), compiler, allow_status=True),
                 vars={**world_vars, **local})


def _compile_bursts(raw: list[dict[str, Any]], span: float, names: list[str]) -> list[Burst]:
    bursts: list[Burst] = []
    total = 0.0
    for i, b in enumerate(raw):
        path: Path = ("time", "bursts", i)
        at, width = parse_duration(b["at"]), parse_duration(b["width"])
        if width <= 0:
            raise SpecError((*path, "width"), "a burst must last longer than 0")
        if at + width > span:
            raise SpecError((*path, "at"), f"the burst ends after the span ({at + width:g}s > {span:g}s)")
        total += b["share"]
        if total > 1:
            raise SpecError((*path, "share"), "the bursts' shares add up to more than 1")
        traffic = None
        if "traffic" in b:
            idx = []
            for j, t in enumerate(b["traffic"]):
                if t not in names:
                    raise SpecError((*path, "traffic", j), f"no traffic named {t!r} (traffic: {', '.join(names)})")
                idx.append(names.index(t))
            traffic = tuple(idx)
        bursts.append(Burst(at, width, float(b["share"]), traffic))
    return bursts


def describe_fault(fault: Fault) -> str:
    """`action.protocol == smb and count(agents) > 5`: a fault's `when` as one line."""
    ops = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in", "not_in": "not in",
           "includes": "includes", "exists": "exists"}
    parts: list[str] = []
    for key, cond in fault.raw_when.items():
        if isinstance(cond, dict):
            parts.extend(f"{key} {ops.get(op, op)} {json.dumps(arg)}" for op, arg in cond.items())
        else:
            parts.append(f"{key} == {json.dumps(cond)}")
    return " and ".join(parts)


__all__ = ["Burst", "Fault", "Interaction", "Message", "Messages", "Noise", "World", "const", "describe_fault",
           "load_world", "parse_duration", "parse_time", "parse_world", "shipped_worlds", "world_schema"]
