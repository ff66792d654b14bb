"""What a script sees when it turns a value into text: `repr`, `str`, f-strings and `%` without addresses.

CPython's default text for a function, a generator, a bound method or any other object
is `<function decide at 0x7f3a…>`: a heap address of the worker, and the names of
interpreter objects. Scripts get the same text without them:

| value | text |
|---|---|
| plain data (None, bool, numbers, str, bytes, range) | as Python writes it |
| list, tuple, dict, set, frozenset, dict views | as Python writes them, every item rendered here |
| a script's own function or lambda | `<function NAME>` |
| a builtin (`len`, `sorted`, `math.sqrt`, `print`) | `<built-in function NAME>`; a method: `<built-in method NAME>` |
| a type (`dict`, `str`, `ValueError`) | `<type NAME>` |
| a generator | `<generator>` |
| `math` | `<module 'math'>` |
| an exception | `ValueError('…')` (repr), its message (str), with addresses cut out of its arguments |
| any other builtin object | `<NAME object>`; anything else `<object>` |

Two layers. Inside the script (wall 2): `repr`, `str` and `print` are these functions, and
the compile wall rewrites every f-string placeholder into a call of `safe_format` and every
`%` into `safe_mod` (CPython formats both in C, `FORMAT_VALUE` and `BINARY_OP`, where no
guard can reach); an exception's `args` are handed out with addresses cut, since C code
writes them into messages (`list.index`: `<function f at 0x…> is not in list`). At the
boundary (the last line): every string a worker sends back, result, print output and error
message, has ` at 0x…` cut out (`scrub_addresses`), whatever produced it.
"""

from __future__ import annotations

import re
import types
from typing import Any

# The module name of a script's globals: its functions have it as __module__.
SCRIPT_MODULE = "override"

# CPython writes an address as " at 0x…" in every default repr (`<… object at 0x…>`,
# `<function f at 0x…>`, `<built-in method append of list object at 0x…>`, `<frame at 0x…, …>`).
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
ADDRESS_MARK = " at 0x"

# Their own repr and str never show an address or an interpreter object.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes, range})
# Formatted by `format` as themselves (f"{x:>8.2f}", "%d" % x).
_FORMATS_ITSELF = frozenset({type(None), bool, int, float, complex, str, bytes})
_DICT_VIEWS = {type({}.keys()): "dict_keys", type({}.values()): "dict_values", type({}.items()): "dict_items"}
_BUILTIN_METHODS = (types.BuiltinMethodType, types.MethodWrapperType, types.WrapperDescriptorType,
                    types.MethodDescriptorType, types.ClassMethodDescriptorType)
_CONVERSIONS = {-1: None, ord("s"): "s", ord("r"): "r", ord("a"): "a"}


def scrub_addresses(text: str) -> str:
    """`text` without CPython's ` at 0x…` addresses (`<function f at 0x7f…>` becomes `<function f>`)."""
    return _ADDRESS.sub("", text) if ADDRESS_MARK in text else text


def scrub_data(value: Any) -> Any:
    """Plain JSON data with every string (keys included) scrubbed; other values as they are."""
    t = type(value)
    if t is str:
        return scrub_addresses(value)
    if t is dict:
        return {scrub_addresses(k) if type(k) is str else k: scrub_data(v) for k, v in value.items()}
    if t is list:
        return [scrub_data(v) for v in value]
    return value


def safe_repr(obj: Any) -> str:
    """`repr(obj)` as a script sees it: Python's own text for plain data, no address for anything."""
    if type(obj) in _PLAIN:
        return repr(obj)
    if type(obj) in (list, tuple, dict, set, frozenset) or type(obj) in _DICT_VIEWS:
        # Plain data all the way down is written by CPython at C speed; only a text that could
        # hold a default repr ("<…>") is rebuilt item by item.
        text = repr(obj)
        if "<" not in text:
            return text
    return _repr(obj, set())


def safe_str(obj: Any) -> str:
    """`str(obj)` as a script sees it."""
    t = type(obj)
    if t is str:
        return obj
    if t in _PLAIN:
        return str(obj)
    if isinstance(obj, BaseException):
        return _exception_str(obj)
    return safe_repr(obj)


def safe_format(value: Any, conversion: int, spec: str) -> str:
    """One f-string placeholder, `{value!conversion:spec}` (the compile wall writes every one as this)."""
    how = _CONVERSIONS.get(conversion)
    if how == "s":
        value = safe_str(value)
    elif how == "r":
        value = safe_repr(value)
    elif how == "a":
        value = safe_repr(value).encode("ascii", "backslashreplace").decode("ascii")
    if type(value) in _FORMATS_ITSELF:
        return format(value, spec)
    return format(safe_str(value), spec)


def safe_mod(left: Any, right: Any) -> Any:
    """`left % right` (the compile wall writes every `%` as this): %-formatting renders through here."""
    if type(left) is str or type(left) is bytes:
        if type(right) is tuple:
            right = tuple(_shown(x) for x in right)
        elif type(right) is dict:
            right = {k: _shown(v) for k, v in right.items()}
        else:
            right = _shown(right)
    return left % right


def scrubbed_args(exc: BaseException) -> tuple[Any, ...]:
    """An exception's args with addresses cut out of its strings (C code writes `%R` of objects there)."""
    return tuple(scrub_addresses(a) if type(a) is str else a for a in exc.args)


class ScriptStr:
    """The `str` of scripts: `str(x)` renders through `safe_str`; `isinstance(x, str)` and `str.lower` work.

    The builtin type cannot be given another constructor, so scripts get this object in its
    place: it is callable like the type, answers isinstance through `__instancecheck__`, and
    the attribute guard reads attributes (`str.join`, `str.lower`) from the real type.
    """

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if not kwargs and len(args) <= 1:
            return safe_str(args[0]) if args else ""
        if not args and set(kwargs) == {"object"}:
            return safe_str(kwargs["object"])
        # str(b, encoding, errors): decoding bytes, which shows no object.
        return str(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, str)

    def __repr__(self) -> str:
        return "<type str>"


SCRIPT_STR = ScriptStr()


class ScriptMath:
    """The `math` a script imports: its pure functions and constants by name, nothing else."""

    __slots__ = ("_members",)

    def __init__(self, members: dict[str, Any]) -> None:
        self._members = members

    def __getattr__(self, name: str) -> Any:
        try:
            return self._members[name]
        except KeyError:
            raise AttributeError(f"math.{name} is not available in overrides") from None

    def __repr__(self) -> str:
        return "<module 'math'>"


class _Shown:
    """An argument of %-formatting that is not plain data: %s and %r get the safe text."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __str__(self) -> str:
        return safe_str(self._obj)

    def __repr__(self) -> str:
        return safe_repr(self._obj)

    def __bytes__(self) -> bytes:
        return safe_str(self._obj).encode("ascii", "backslashreplace")


def _shown(obj: Any) -> Any:
    return obj if type(obj) in _FORMATS_ITSELF else _Shown(obj)


def _repr(obj: Any, seen: set[int]) -> str:
    t = type(obj)
    if t in _PLAIN:
        return repr(obj)
    if t is list or t is tuple or t is dict or t is set or t is frozenset or t in _DICT_VIEWS:
        return _container_repr(obj, t, seen)
    if isinstance(obj, BaseException):
        return f"{t.__name__}({', '.join(_repr(a, seen) for a in scrubbed_args(obj))})"
    if t is type:
        return f"<type {obj.__name__}>"
    if obj is SCRIPT_STR:
        return "<type str>"
    if t is ScriptMath:
        return "<module 'math'>"
    if t is types.FunctionType:
        if obj.__module__ == SCRIPT_MODULE:
            return f"<function {obj.__name__}>"
        return f"<built-in function {obj.__name__}>"
    if t is types.MethodType:
        # `print` in a script is RestrictedPython's `_print._call_print`, a bound method.
        name = "print" if obj.__name__ == "_call_print" else obj.__name__
        return f"<built-in function {name}>"
    if t is types.BuiltinFunctionType:
        owner = obj.__self__
        kind = "function" if owner is None or type(owner) is types.ModuleType else "method"
        return f"<built-in {kind} {obj.__name__}>"
    if isinstance(obj, _BUILTIN_METHODS):
        return f"<built-in method {getattr(obj, '__name__', '?')}>"
    if t is types.GeneratorType:
        return "<generator>"
    if t.__module__ == "builtins":
        return f"<{t.__name__} object>"
    return "<object>"


def _container_repr(obj: Any, t: type, seen: set[int]) -> str:
    key = id(obj)
    if key in seen:
        return "[...]" if t is list else "{...}" if t is dict else "(...)" if t is tuple else "..."
    seen.add(key)
    try:
        if t is list:
            return "[" + ", ".join(_repr(x, seen) for x in obj) + "]"
        if t is tuple:
            if len(obj) == 1:
                return "(" + _repr(obj[0], seen) + ",)"
            return "(" + ", ".join(_repr(x, seen) for x in obj) + ")"
        if t is dict:
            return "{" + ", ".join(f"{_repr(k, seen)}: {_repr(v, seen)}" for k, v in obj.items()) + "}"
        if t is set or t is frozenset:
            if not obj:
                return f"{t.__name__}()"
            items = "{" + ", ".join(_repr(x, seen) for x in obj) + "}"
            return items if t is set else f"frozenset({items})"
        return f"{_DICT_VIEWS[t]}([" + ", ".join(_repr(x, seen) for x in obj) + "])"
    finally:
        seen.discard(key)


def _exception_str(exc: BaseException) -> str:
    args = scrubbed_args(exc)
    if all(type(a) in _PLAIN for a in args):
        # CPython's own text (KeyError's repr of its key, OSError's "[Errno …]", UnicodeError's
        # summary) is address-free when the arguments are plain: cut what C wrote into them.
        return scrub_addresses(str(exc))
    if not args:
        return ""
    if len(args) == 1:
        return _repr(args[0], set()) if isinstance(exc, KeyError) else safe_str(args[0])
    return _repr(args, set())
