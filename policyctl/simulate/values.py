"""Value specs of world files compiled to fast generators: constants, choices, numbers, hex ids, string templates."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from random import Random
from typing import Any

Path = tuple[str | int, ...]

# Keys that make a mapping a distribution rather than a nested object of input fields.
DISTRIBUTIONS = ("const", "choice", "uniform", "lognormal", "hex", "template")
_ALLOWED_WITH = {
    "const": {"const"},
    "choice": {"choice", "weights"},
    "uniform": {"uniform"},
    "lognormal": {"lognormal", "min", "max"},
    "hex": {"hex"},
    "template": {"template", "vars"},
}

_MISSING: Any = object()


class Scope:
    """What templates can read while one event is generated: the input, drawn vars, outcome details.

    Vars are drawn lazily and at most once per event, so `{file}` in a message and in a
    trace line is the same file.
    """

    __slots__ = ("input", "rng", "specs", "cache")

    def __init__(self, input: dict[str, Any], rng: Random, specs: Mapping[str, Gen],
                 cache: dict[str, Any] | None = None) -> None:
        self.input = input
        self.rng = rng
        self.specs = specs
        self.cache: dict[str, Any] = cache if cache is not None else {}

    def get(self, name: str) -> Any:
        value = self.cache.get(name, _MISSING)
        if value is _MISSING:
            spec = self.specs.get(name)
            if spec is not None:
                value = spec.draw(self.rng, self)
            else:
                builtin = BUILTINS.get(name)
                value = builtin(self) if builtin is not None else ""
            self.cache[name] = value
        return value


def _agents(scope: Scope) -> list[dict[str, Any]]:
    agents = scope.input.get("agents")
    return agents if isinstance(agents, list) else []


def _agent_field(scope: Scope, index: int, name: str) -> Any:
    agents = _agents(scope)
    return agents[index].get(name, "") if len(agents) > index and isinstance(agents[index], dict) else ""


def resource_label(input: Mapping[str, Any]) -> str:
    """A short name for the input's resource: its id, else host:port, else its kind."""
    resource = input.get("resource")
    if not isinstance(resource, dict):
        return ""
    if "id" in resource:
        return str(resource["id"])
    if "port" in resource:
        host = resource.get("host")
        return f"{host}:{resource['port']}" if host else f"port {resource['port']}"
    return str(resource.get("kind", ""))


def format_duration(ms: Any) -> str:
    """812 -> "812ms", 30412 -> "30.4s", 184000 -> "3m04s": how services print durations."""
    if not isinstance(ms, int | float):
        return str(ms)
    if ms < 1000:
        return f"{int(ms)}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    minutes, seconds = divmod(int(ms) // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


# Names every template may use besides its vars and `input.<path>`.
BUILTINS: dict[str, Callable[[Scope], Any]] = {
    "agent": lambda s: _agent_field(s, 0, "id"),
    "role": lambda s: _agent_field(s, 0, "role"),
    "other": lambda s: _agent_field(s, 1, "id"),
    "agents": lambda s: ", ".join(str(a.get("id", "")) for a in _agents(s) if isinstance(a, dict)),
    "n_agents": lambda s: len(_agents(s)),
    "resource": lambda s: resource_label(s.input),
    "hex": lambda s: f"{s.rng.getrandbits(32):08x}",
    "duration": lambda s: format_duration(s.cache.get("duration_ms")),
}
# Set by the simulator once the outcome is known; only messages and trace lines may use them.
OUTCOME_NAMES = frozenset({"duration_ms", "duration", "code", "status"})


@dataclass(frozen=True)
class Namespace:
    """The names a template may use where it is written, to catch typos when the world loads."""

    vars: frozenset[str] = frozenset()
    input_paths: frozenset[str] | None = None  # None: any input path
    outcome: bool = False
    where: str = "traffic"  # for messages: "messages and traces" vs "traffic"

    def check(self, name: str, raise_at: Callable[[str], Exception]) -> None:
        if name.startswith("input."):
            if self.input_paths is not None:
                key = normalize_path(name[len("input."):])
                if key not in self.input_paths and not any(p.startswith(key + ".") for p in self.input_paths):
                    known = ", ".join(sorted(self.input_paths)[:12])
                    raise raise_at(f"{{{name}}}: no field {key!r} is generated here (known: {known})")
            return
        if name in self.vars or name in BUILTINS:
            return
        if name in OUTCOME_NAMES:
            if self.outcome:
                return
            raise raise_at(f"{{{name}}} is only known in messages and trace lines")
        names = sorted({*self.vars, *BUILTINS, *(OUTCOME_NAMES if self.outcome else ())})
        raise raise_at(f"unknown variable {{{name}}} (declare it under vars, write {{input.<field>}}, "
                       f"or use one of: {', '.join(names)})")


def normalize_path(path: str) -> str:
    """`agents.0.role` -> `agents.role`: list indexes do not change which field is meant."""
    return ".".join(p for p in path.split(".") if not p.isdigit())


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_-]*|\d+))*$")


class Template:
    """A string with `{name}` and `{name:format}` placeholders, parsed once and rendered per event."""

    __slots__ = ("text", "parts", "names", "constant", "fmt", "getters")

    def __init__(self, text: str, parts: list[str | Callable[[Scope], str]], names: list[str],
                 fmt: str = "", getters: list[Callable[[Scope], Any]] | None = None) -> None:
        self.text = text
        self.parts = parts
        self.names = names
        self.constant = all(isinstance(p, str) for p in parts)
        # str.format does the joining and formatting in C: the fast path for every event.
        self.fmt = fmt
        self.getters = getters or []

    def render(self, scope: Scope) -> str:
        if self.constant:
            return self.text
        try:
            return self.fmt.format(*[g(scope) for g in self.getters])
        except (ValueError, TypeError):
            # A value that does not fit its format spec ({n:03d} given text): print it plainly.
            return "".join(p if isinstance(p, str) else p(scope) for p in self.parts)


def compile_template(text: str, namespace: Namespace, where: Callable[[str], Exception]) -> Template:
    """Parse `text` once; every placeholder must name a var, a builtin or an input field."""
    parts: list[str | Callable[[Scope], str]] = []
    names: list[str] = []
    literal: list[str] = []
    fmt: list[str] = []
    getters: list[Callable[[Scope], Any]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        literal.append(text[pos:m.start()])
        fmt.append(text[pos:m.start()].replace("{", "{{").replace("}", "}}"))
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            fmt.append(token)
            continue
        if m.group(1) is None:
            raise where(f"unmatched {token!r} in {text!r} (write {token * 2} for a literal {token})")
        name, _, spec = m.group(1).strip().partition(":")
        name = name.strip()
        if not _NAME.match(name):
            raise where(f"{{{m.group(1)}}} is not a variable name in {text!r}")
        namespace.check(name, where)
        if spec and not _valid_spec(spec):
            raise where(f"{{{m.group(1)}}}: bad format spec {spec!r} (Python format specs: 03d, ,, .1f, >8)")
        names.append(name)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_resolver(name, spec))
        get = _getter(name)
        fmt.append(f"{{{len(getters)}:{spec}}}" if spec else f"{{{len(getters)}}}")
        getters.append(get if spec else _as_text(get))
    literal.append(text[pos:])
    fmt.append(text[pos:].replace("{", "{{").replace("}", "}}"))
    if "".join(literal):
        parts.append("".join(literal))
    constant_text = "".join(p for p in parts if isinstance(p, str)) if all(isinstance(p, str) for p in parts) else text
    return Template(constant_text, parts, names, "".join(fmt), getters)


def _as_text(get: Callable[[Scope], Any]) -> Callable[[Scope], str]:
    return lambda scope: _text(get(scope))


def _getter(name: str) -> Callable[[Scope], Any]:
    if name.startswith("input."):
        path = parse_path(name[len("input."):])
        return lambda scope: get_path(scope.input, path)
    return lambda scope: scope.get(name)


def _valid_spec(spec: str) -> bool:
    for sample in (1234, "x"):
        try:
            format(sample, spec)
        except (ValueError, TypeError):
            continue
        return True
    return False


def _resolver(name: str, spec: str) -> Callable[[Scope], str]:
    get = _getter(name)
    if spec:
        def render(scope: Scope) -> str:
            value = get(scope)
            try:
                return format(value, spec)
            except (ValueError, TypeError):
                return _text(value)
        return render
    return lambda scope: _text(get(scope))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or value is _MISSING:
        return ""
    return str(value)


def parse_path(text: str) -> Path:
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


def get_path(value: Any, path: Path) -> Any:
    """The value at a dotted path, or "" when it is missing; lists take indexes."""
    for part in path:
        if isinstance(value, dict):
            value = value.get(str(part), _MISSING) if isinstance(part, int) else value.get(part, _MISSING)
        elif isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
            value = value[part]
        else:
            return ""
        if value is _MISSING:
            return ""
    return value


# --------------------------------------------------------------------------- generators


class Gen:
    """A compiled value spec: `draw(rng, scope)` gives one value. Constants are shared, never copied."""

    __slots__ = ("draw", "constant", "value", "choices", "bounds")

    def __init__(self, draw: Callable[[Random, Scope], Any], *, constant: bool = False, value: Any = None,
                 choices: tuple[Any, ...] | None = None, bounds: tuple[float, float] | None = None) -> None:
        self.draw = draw
        self.constant = constant
        self.value = value
        # The values a const or a choice of consts can take (checked against roles, etc.).
        self.choices = choices if choices is not None else ((value,) if constant else None)
        numbers = [v for v in self.choices or () if isinstance(v, int | float) and not isinstance(v, bool)]
        if bounds is None and numbers and len(numbers) == len(self.choices or ()):
            bounds = (min(numbers), max(numbers))
        # The smallest and largest number it can draw, when known (checked against agent counts).
        self.bounds = bounds


def const(value: Any) -> Gen:
    return Gen(lambda rng, scope: value, constant=True, value=value)


@dataclass
class ObjectGen:
    """A nested object of input fields; each field is its own spec, generated in the order written."""

    fields: list[tuple[str, Gen | ObjectGen]] = field(default_factory=list)

    def fill(self, target: dict[str, Any], rng: Random, scope: Scope) -> None:
        # Attach children before filling them, so a later field's template can read an earlier one.
        for key, gen in self.fields:
            if isinstance(gen, ObjectGen):
                child: dict[str, Any] = {}
                target[key] = child
                gen.fill(child, rng, scope)
            else:
                target[key] = gen.draw(rng, scope)


class SpecError(Exception):
    """A bad spec at `path` (relative to where compile_value was called)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class Compiler:
    """Compiles value specs; `raise_at(path, message)` builds the error for a relative path."""

    def __init__(self, namespace: Namespace, generated: set[str] | None = None, prefix: str = "") -> None:
        self.namespace = namespace
        # Input paths generated so far, in order: a template may read only fields written before it.
        self.generated = generated
        self.prefix = prefix

    def value(self, spec: Any, path: Path = ()) -> Gen:
        if isinstance(spec, dict):
            kinds = [k for k in DISTRIBUTIONS if k in spec]
            if not kinds:
                raise SpecError(path, "expected a value or a distribution "
                                f"({', '.join(DISTRIBUTIONS)}), got an object with {', '.join(map(repr, spec))}")
            return self._distribution(kinds, spec, path)
        if isinstance(spec, list):
            items = [self.value(item, (*path, i)) for i, item in enumerate(spec)]
            if all(g.constant for g in items):
                return const([g.value for g in items])
            return Gen(lambda rng, scope: [g.draw(rng, scope) for g in items])
        return const(spec)

    def field(self, spec: Any, path: Path, input_path: str) -> Gen | ObjectGen:
        """A field of the input: a nested object of fields, or a value spec."""
        if isinstance(spec, dict) and not any(k in spec for k in DISTRIBUTIONS):
            obj = ObjectGen()
            for key, sub in spec.items():
                if not isinstance(key, str) or not key:
                    raise SpecError((*path, str(key)), "field names must be non-empty strings")
                obj.fields.append((key, self.field(sub, (*path, key), f"{input_path}.{key}")))
            if not obj.fields:
                return const({})
            if self.generated is not None:
                self.generated.add(input_path)
            if all(isinstance(g, Gen) and g.constant for _, g in obj.fields):
                return const({k: g.value for k, g in obj.fields if isinstance(g, Gen)})
            return obj
        gen = self.value(spec, path)
        if self.generated is not None:
            self.generated.add(input_path)
        return gen

    def _distribution(self, kinds: list[str], spec: dict[str, Any], path: Path) -> Gen:
        if len(kinds) > 1:
            raise SpecError(path, f"one distribution per value, got {' and '.join(kinds)}")
        kind = kinds[0]
        extra = sorted(set(spec) - _ALLOWED_WITH[kind])
        if extra:
            allowed = ", ".join(sorted(_ALLOWED_WITH[kind]))
            raise SpecError((*path, extra[0]), f"unknown key {extra[0]!r} in a {kind} (allowed: {allowed})")
        return getattr(self, f"_{kind}")(spec, path)

    def _const(self, spec: dict[str, Any], path: Path) -> Gen:
        return const(spec["const"])

    def _choice(self, spec: dict[str, Any], path: Path) -> Gen:
        options = spec["choice"]
        if not isinstance(options, list) or not options:
            raise SpecError((*path, "choice"), "expected a non-empty list of options")
        weights = spec.get("weights")
        if weights is None:
            weights = [1] * len(options)
        elif not isinstance(weights, list) or len(weights) != len(options):
            n = len(weights) if isinstance(weights, list) else "no list of"
            raise SpecError((*path, "weights"), f"{len(options)} choices but {n} weights")
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, int | float) or w < 0:
                raise SpecError((*path, "weights", i), f"a weight is a number >= 0, got {w!r}")
        total = float(sum(weights))
        if total <= 0:
            raise SpecError((*path, "weights"), "the weights add up to 0")
        items = [self.value(o, (*path, "choice", i)) for i, o in enumerate(options)]
        cumulative = list(accumulate(float(w) for w in weights))
        last = len(items) - 1
        if all(g.constant for g in items):
            values = tuple(g.value for g in items)
            if len(set(map(repr, weights))) == 1:
                n = len(values)
                return Gen(lambda rng, scope: values[int(rng.random() * n)], choices=values)
            return Gen(lambda rng, scope: values[min(bisect_right(cumulative, rng.random() * total), last)],
                       choices=values)
        return Gen(lambda rng, scope: items[min(bisect_right(cumulative, rng.random() * total), last)].draw(rng, scope))

    def _uniform(self, spec: dict[str, Any], path: Path) -> Gen:
        bounds = spec["uniform"]
        if (not isinstance(bounds, list) or len(bounds) != 2
                or any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds)):
            raise SpecError((*path, "uniform"), f"expected [low, high] numbers, got {bounds!r}")
        lo, hi = bounds
        if lo > hi:
            raise SpecError((*path, "uniform"), f"low {lo} is above high {hi}")
        if isinstance(lo, int) and isinstance(hi, int):
            span = hi - lo + 1
            return Gen(lambda rng, scope: lo + int(rng.random() * span), bounds=(lo, hi))
        return Gen(lambda rng, scope: lo + (hi - lo) * rng.random(), bounds=(lo, hi))

    def _lognormal(self, spec: dict[str, Any], path: Path) -> Gen:
        params = spec["lognormal"]
        if not isinstance(params, dict) or set(params) - {"median", "sigma"} or "median" not in params:
            raise SpecError((*path, "lognormal"), f"expected {{median: N, sigma: S}}, got {params!r}")
        median, sigma = params["median"], params.get("sigma", 1.0)
        for key, v in (("median", median), ("sigma", sigma)):
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (key == "median" and v == 0):
                raise SpecError((*path, "lognormal", key), f"expected a positive number, got {v!r}")
        lo, hi = spec.get("min", 0), spec.get("max", math.inf)
        for key, v in (("min", lo), ("max", hi)):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise SpecError((*path, key), f"expected a number, got {v!r}")
        if lo > hi:
            raise SpecError((*path, "min"), f"min {lo} is above max {hi}")
        mu = math.log(median)

        def draw(rng: Random, scope: Scope) -> int:
            value = int(rng.lognormvariate(mu, sigma))
            return int(lo) if value < lo else int(hi) if value > hi else value
        return Gen(draw, bounds=(lo, hi))

    def _hex(self, spec: dict[str, Any], path: Path) -> Gen:
        digits = spec["hex"]
        if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 64:
            raise SpecError((*path, "hex"), f"expected a number of hex digits 1..64, got {digits!r}")
        bits, fmt = digits * 4, f"0{digits}x"
        return Gen(lambda rng, scope: format(rng.getrandbits(bits), fmt))

    def _template(self, spec: dict[str, Any], path: Path) -> Gen:
        text = spec["template"]
        if not isinstance(text, str):
            raise SpecError((*path, "template"), f"expected a string, got {text!r}")
        local = spec.get("vars") or {}
        if not isinstance(local, dict):
            raise SpecError((*path, "vars"), "expected a mapping of name: value")
        local_gens = {str(k): self.value(v, (*path, "vars", str(k))) for k, v in local.items()}
        namespace = Namespace(vars=self.namespace.vars | frozenset(local_gens),
                              input_paths=frozenset(self.generated) if self.generated is not None
                              else self.namespace.input_paths,
                              outcome=self.namespace.outcome)

        def error(message: str) -> SpecError:
            return SpecError((*path, "template"), message)
        template = compile_template(text, namespace, error)
        if template.constant and not local_gens:
            return const(template.render(Scope({}, Random(0), {})))
        if not local_gens:
            return Gen(lambda rng, scope: template.render(scope))

        def draw(rng: Random, scope: Scope) -> str:
            return template.render(_LocalScope(scope, rng, local_gens))
        return Gen(draw)


class _LocalScope(Scope):
    """A template's own vars, drawn afresh each time it renders; other names come from the outer scope."""

    __slots__ = ("outer",)

    def __init__(self, outer: Scope, rng: Random, local: Mapping[str, Gen]) -> None:
        super().__init__(outer.input, rng, local)
        self.outer = outer

    def get(self, name: str) -> Any:
        if name not in self.specs:
            return self.outer.get(name)
        return super().get(name)


def choice_values(gen: Gen) -> Iterable[Any] | None:
    """The values a const or a choice of consts can take, or None when it is drawn from a range."""
    return gen.choices
