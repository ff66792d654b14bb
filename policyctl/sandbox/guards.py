"""The second wall: the builtins and guards a script runs with, built fresh for every run.

RestrictedPython rewrites `a.b`, `a[b]`, `for x in a`, `a.b = c`, `x += y` and `print`
into calls of `_getattr_`, `_getitem_`, `_getiter_`, `_write_`, `_inplacevar_` and
`_print_`; the security policy is whatever those names are bound to here. Ours is an
allowlist: a script reaches plain data (dicts, lists, strings, numbers), the small set
of builtins below and its own functions, and every refusal is recorded as a violation
that fails the run even if the script catches the exception.
"""

from __future__ import annotations

import math
import operator
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from policyctl.sandbox.limits import MAX_PRINT_CHARS
from policyctl.sandbox.render import (
    SCRIPT_MODULE,
    SCRIPT_STR,
    ScriptMath,
    safe_format,
    safe_mod,
    safe_repr,
    safe_str,
    scrubbed_args,
)

# `import math`: its pure functions and constants. Nothing of it touches the process; the
# ones that can run long in C (factorial, comb, perm, isqrt of huge numbers) are bounded by
# the deadline and the memory limit like `10**10**9`. fsum, prod and dist iterate in C, so
# scripts get wrappers that iterate through the guard (below).
MATH_NAMES: frozenset[str] = frozenset(name for name in (
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb", "copysign", "cos",
    "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1", "fabs", "factorial", "floor",
    "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf", "isclose", "isfinite", "isinf", "isnan",
    "isqrt", "lcm", "ldexp", "lgamma", "log", "log10", "log1p", "log2", "modf", "nan", "nextafter", "perm",
    "pi", "pow", "prod", "radians", "remainder", "sin", "sinh", "sqrt", "tan", "tanh", "tau", "trunc", "ulp",
) if hasattr(math, name))
_MATH = {name: getattr(math, name) for name in MATH_NAMES}  # built once; each run adds its guarded fsum/prod/dist
IMPORTABLE = "math"  # the one module a script may import

# Plain data and the few builtin objects scripts get from it. Attribute access on anything
# else (functions, builtins, iterators, modules, frames) is refused outright.
_DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
_DATA_TYPES: frozenset[type] = frozenset({str, dict, list, tuple, set, frozenset, int, float, bool, range})
_TYPE_OBJECTS: frozenset[type] = frozenset({str, dict, list, tuple, set, frozenset, int, float, bool})
_RECEIVER_ATTRS: dict[type, frozenset[str]] = {
    types.GeneratorType: frozenset({"send", "throw", "close"}),
    **{view: frozenset({"isdisjoint"}) for view in _DICT_VIEWS},
    ScriptMath: MATH_NAMES,
}
# Iterating anything else (a type, a function) is refused: there is nothing a script should find there.
_ITERABLE: frozenset[type] = frozenset({*_DATA_TYPES, *_DICT_VIEWS, types.GeneratorType, enumerate, zip})
_SUBSCRIPTABLE: frozenset[type] = frozenset({dict, list, tuple, str, range})
_WRITABLE: frozenset[type] = frozenset({dict, list})
# `str.format` and `format_map` read attributes in C (CVE-2023-41039); `mro` hands out `object`.
_DENIED_ATTRS = frozenset({"format", "format_map", "mro"})

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand,
}
_INPLACE_TYPES: frozenset[type] = frozenset({int, float, bool, str, list, tuple, set, frozenset, dict})

# The exceptions a script may raise or catch by name. BaseException, SystemExit,
# KeyboardInterrupt, GeneratorExit, MemoryError and RecursionError are left out: a script
# has no business raising them or catching them by name.
_EXCEPTIONS = (ArithmeticError, AssertionError, AttributeError, Exception, IndexError, KeyError,
               LookupError, NameError, NotImplementedError, OverflowError, RuntimeError, StopIteration,
               TypeError, ValueError, ZeroDivisionError)

_MISSING = object()


class Refused(Exception):
    """A guard said no. Scripts cannot name it; the run fails with a violation either way."""


class OutputExceeded(BaseException):
    """print() went past its budget. A BaseException, so `except Exception` in a script passes it on."""


class RunContext:
    """The state of one run: violations recorded by the guards and the print budget."""

    __slots__ = ("file", "violations", "violation_line", "printed", "printed_chars", "output_exceeded",
                 "max_print_chars")

    def __init__(self, file: str = "<override>", max_print_chars: int = MAX_PRINT_CHARS) -> None:
        self.file = file
        self.violations: list[str] = []
        self.violation_line: int | None = None
        self.printed: list[str] = []
        self.printed_chars = 0
        self.output_exceeded = False
        self.max_print_chars = max_print_chars

    def refuse(self, message: str) -> Refused:
        if not self.violations:
            self.violation_line = self._script_line()
        self.violations.append(message)
        return Refused(message)

    def _script_line(self) -> int | None:
        # The script's line that asked, even if the script later catches the refusal.
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename == self.file:
                return frame.f_lineno
            frame = frame.f_back  # type: ignore[assignment]
        return None

    def take_print(self, text: str) -> None:
        self.printed_chars += len(text)
        if self.printed_chars > self.max_print_chars:
            self.output_exceeded = True
            raise OutputExceeded(f"print() output passed {self.max_print_chars} characters")
        self.printed.append(text)


class _PrintCollector:
    """What RestrictedPython binds to `_print` in a function that prints; shares the run's budget."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._own: list[str] = []

    def __call__(self) -> str:  # the `printed` name
        return "".join(self._own)

    def _call_print(self, *objects: Any, sep: Any = " ", end: Any = "\n", file: Any = None,
                    flush: Any = False) -> None:
        if file is not None:
            raise self._ctx.refuse("print(file=...) is not allowed: output goes to the run's log")
        if (sep is not None and type(sep) is not str) or (end is not None and type(end) is not str):
            raise TypeError("sep and end must be strings")
        # Scripts cannot define classes, so no __str__ of theirs runs; safe_str shows no addresses.
        text = (" " if sep is None else sep).join(safe_str(o) for o in objects) + ("\n" if end is None else end)
        self._ctx.take_print(text)
        self._own.append(text)


def make_globals(ctx: RunContext) -> dict[str, Any]:
    """A fresh globals dict for one run: nothing in it survives to the next run."""

    def guarded_getattr(ob: Any, name: Any, default: Any = _MISSING) -> Any:
        if type(name) is not str:
            raise ctx.refuse("attribute names must be plain strings")
        if name.startswith("_") or name in INSPECT_ATTRIBUTES or name in _DENIED_ATTRS:
            raise ctx.refuse(f"attribute {name!r} is not allowed in overrides")
        if ob is SCRIPT_STR:
            ob = str  # `str.lower`, `str.join`: the real type's methods
        t = type(ob)
        if t is type:
            if ob not in _TYPE_OBJECTS:
                raise ctx.refuse(f"attribute {name!r} of {ob.__name__} is not allowed in overrides")
        elif t not in _DATA_TYPES:
            allowed = _RECEIVER_ATTRS.get(t)
            if isinstance(ob, BaseException):
                allowed = frozenset({"args"})
            if allowed is None or name not in allowed:
                raise ctx.refuse(f"attribute {name!r} of a {t.__name__} is not allowed in overrides")
        # RestrictedPython's own checks once more, as a second opinion.
        value = safer_getattr_raise(ob, name) if default is _MISSING else safer_getattr_raise(ob, name, default)
        if name == "args" and isinstance(ob, BaseException):
            return scrubbed_args(ob)  # C code writes objects' default reprs into messages
        return value

    def guarded_getitem(ob: Any, index: Any) -> Any:
        if type(ob) not in _SUBSCRIPTABLE:
            raise ctx.refuse(f"subscripting a {type(ob).__name__} is not allowed in overrides")
        return ob[index]

    def guarded_iter(ob: Any) -> Iterator[Any]:
        if type(ob) not in _ITERABLE:
            raise ctx.refuse(f"iterating over a {type(ob).__name__} is not allowed in overrides")
        return iter(ob)

    def guarded_write(ob: Any) -> Any:
        if type(ob) not in _WRITABLE:
            raise ctx.refuse(f"changing a {type(ob).__name__} is not allowed in overrides; "
                             "only dicts and lists can be changed")
        return ob

    def inplacevar(op: str, x: Any, y: Any) -> Any:
        fn = _INPLACE.get(op)
        if fn is None or type(x) not in _INPLACE_TYPES:
            raise ctx.refuse(f"{op} on a {type(x).__name__} is not allowed in overrides")
        return safe_mod(x, y) if op == "%=" else fn(x, y)

    def apply(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)

    def print_factory(_getattr_: Any = None) -> _PrintCollector:
        return _PrintCollector(ctx)

    # Builtins that iterate in C would bypass `_getiter_` (RestrictedPython 9.0 dropped
    # sorted and zip for that reason): these wrappers route every iterable through it.
    def sorted_(iterable: Iterable[Any], /, *, key: Any = None, reverse: bool = False) -> list[Any]:
        return sorted(guarded_iter(iterable), key=key, reverse=reverse)

    def zip_(*iterables: Iterable[Any], strict: bool = False) -> zip[Any]:
        return zip(*[guarded_iter(it) for it in iterables], strict=strict)

    def enumerate_(iterable: Iterable[Any], start: int = 0) -> enumerate[Any]:
        return enumerate(guarded_iter(iterable), start)

    def reversed_(sequence: Iterable[Any]) -> list[Any]:
        return list(guarded_iter(sequence))[::-1]

    def sum_(iterable: Iterable[Any], /, start: Any = 0) -> Any:
        return sum(guarded_iter(iterable), start)

    def any_(iterable: Iterable[Any]) -> bool:
        return any(guarded_iter(iterable))

    def all_(iterable: Iterable[Any]) -> bool:
        return all(guarded_iter(iterable))

    def extreme(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, key: Any = None, default: Any = _MISSING) -> Any:
            kwargs: dict[str, Any] = {} if key is None else {"key": key}
            if default is not _MISSING:
                kwargs["default"] = default
            if len(args) == 1:
                return fn(guarded_iter(args[0]), **kwargs)
            return fn(*args, **kwargs)
        wrapper.__name__ = fn.__name__
        return wrapper

    def fsum_(iterable: Iterable[Any], /) -> float:
        return math.fsum(guarded_iter(iterable))

    def prod_(iterable: Iterable[Any], /, *, start: Any = 1) -> Any:
        return math.prod(guarded_iter(iterable), start=start)

    def dist_(p: Iterable[Any], q: Iterable[Any], /) -> float:
        return math.dist(tuple(guarded_iter(p)), tuple(guarded_iter(q)))

    def repr_(obj: Any, /) -> str:
        return safe_repr(obj)

    wrapped_math = {"fsum": fsum_, "prod": prod_, "dist": dist_}
    script_math = ScriptMath({**_MATH, **wrapped_math})

    def import_(name: Any, globals: Any = None, locals: Any = None, fromlist: Any = (), level: Any = 0) -> Any:
        if name == IMPORTABLE and level == 0:
            return script_math
        raise ctx.refuse(f"import {name}: the sandbox offers no modules but math")

    builtins: dict[str, Any] = {
        "None": None, "True": True, "False": False,
        "bool": bool, "int": int, "float": float, "str": SCRIPT_STR, "list": list, "dict": dict,
        "tuple": tuple, "set": set, "frozenset": frozenset, "range": range,
        "abs": abs, "chr": chr, "ord": ord, "divmod": divmod, "pow": pow, "round": round,
        "len": len, "repr": repr_, "isinstance": isinstance, "hex": hex, "oct": oct, "bin": bin,
        "sorted": sorted_, "zip": zip_, "enumerate": enumerate_, "reversed": reversed_,
        "sum": sum_, "any": any_, "all": all_, "min": extreme(min), "max": extreme(max),
        **{exc.__name__: exc for exc in _EXCEPTIONS},
    }
    # A wrapper shows as the builtin it stands for (`<built-in function sorted>`), not as guards' code.
    for name, value in [*builtins.items(), *wrapped_math.items()]:
        if type(value) is types.FunctionType and "<locals>" in value.__qualname__:
            value.__name__ = value.__qualname__ = name
    builtins["__import__"] = import_
    return {
        "__builtins__": builtins,
        "__name__": SCRIPT_MODULE,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": guarded_iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": inplacevar,
        "_apply_": apply,
        "_print_": print_factory,
        "_format_": safe_format,
        "_mod_": safe_mod,
    }
