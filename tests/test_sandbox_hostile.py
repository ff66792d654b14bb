"""Hostile override scripts: every one is blocked or contained, and the sandbox keeps answering.

Each attack runs through the public `run_override` (the real compile wall, guards and
worker processes, no mocks), must raise the SandboxError subclass named here, must leave
the caller's input untouched, and must be followed by a legitimate call that succeeds.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from policyctl.sandbox import (
    InvalidDecision,
    OverrideRuntimeError,
    SandboxCompileError,
    SandboxError,
    SandboxLimitError,
    SandboxTimeout,
    SandboxViolation,
    WorkerPool,
    run_override,
    run_override_traced,
    shared_pool,
)
from policyctl.sandbox.guards import Refused, RunContext, make_globals
from policyctl.sandbox.limits import MAX_MESSAGE_CHARS
from policyctl.sandbox.render import scrub_addresses
from policyctl.sandbox.worker import encode_response

INPUT: dict[str, Any] = {
    "kind": "conflict",
    "agents": [{"id": "deploy-2", "role": "deploy", "priority": 5},
               {"id": "backup-1", "role": "backup", "priority": 10}],
    "resource": {"kind": "port", "port": 22, "host": "bastion-1"},
    "context": {"tags": ["a", "b"]},
}
LEGIT = '''
def decide(input):
    ranked = sorted(input["agents"], key=lambda a: (-a.get("priority", 0), a["id"]))
    return {"action": "arbitrate", "params": {"winner": ranked[0]["id"], "order": [a["id"] for a in ranked]}}
'''
LEGIT_DECISION = {"action": "arbitrate", "params": {"winner": "backup-1", "order": ["backup-1", "deploy-2"]}}
TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Attack:
    id: str
    source: str
    expect: type[SandboxError] | tuple[type[SandboxError], ...]


def fn(body: str, prelude: str = "") -> str:
    """A script whose decide(input) runs `body`."""
    return prelude + "def decide(input):\n" + "".join(f"    {line}\n" for line in body.splitlines())


ATTACKS = [
    # --- attribute walking to the interpreter's internals
    Attack("subclasses-walk", fn("return ().__class__.__bases__[0].__subclasses__()"), SandboxCompileError),
    Attack("globals-of-function", fn("return decide.__globals__['__builtins__']"), SandboxCompileError),
    Attack("builtins-by-name", fn("return __builtins__['open']"), SandboxCompileError),
    Attack("func-globals-py2-name", fn("return decide.func_globals"), SandboxViolation),
    Attack("mro-to-object", fn("return str.mro()[1]"), SandboxViolation),
    Attack("generic-alias", fn("return list[int]"), SandboxViolation),
    Attack("dict-view-mapping", fn("return input.keys().mapping"), SandboxViolation),
    Attack("attribute-error-obj", fn("try:\n    input.nope\nexcept AttributeError as e:\n    return e.obj"),
           SandboxViolation),
    # --- format strings read attributes in C (CVE-2023-41039)
    Attack("str-format", fn('return {"action": "deny", "params": {"x": "{0.__class__.__mro__}".format(input)}}'),
           SandboxViolation),
    Attack("str-format-map", fn('return "{a.__class__}".format_map({"a": input})'), SandboxViolation),
    Attack("unbound-str-format", fn('f = str.format\nreturn f("{0.__class__}", input)'), SandboxViolation),
    Attack("string-formatter-import", "import string\n" + fn('return string.Formatter().format("{0.__class__}", 1)'),
           SandboxCompileError),
    Attack("string-formatter-name", fn('return string.Formatter().format("{0.__class__}", input)'),
           OverrideRuntimeError),
    Attack("f-string-dunder", fn('return f"{input.__class__}"'), SandboxCompileError),
    # --- frames: generators, tracebacks, f_back (CVE-2023-37271)
    Attack("generator-gi-frame", fn("g = (x for x in [1])\nreturn g.gi_frame.f_back.f_globals"),
           SandboxCompileError),
    Attack("generator-other-attribute", fn("g = (x for x in [1])\nreturn g.gi_running"), SandboxViolation),
    Attack("traceback-tb-frame", fn("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
                                    "    return e.__traceback__.tb_frame.f_back"), SandboxCompileError),
    Attack("exception-with-traceback", fn("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
                                          "    return e.with_traceback(None)"), SandboxViolation),
    # --- computed getattr and friends
    Attack("computed-getattr", fn('return getattr(input, "__cla" + "ss__")'), SandboxCompileError),
    Attack("vars-globals-dir", fn("return [vars(), globals(), dir()]"), SandboxCompileError),
    Attack("setattr-on-builtin", fn('setattr(sorted, "x", 1)'), SandboxCompileError),
    Attack("positional-only-shadows-guard", "def decide(input, _getattr_=None, /):\n    return None\n",
           SandboxCompileError),
    # --- imports by every route
    Attack("import-statement", "import os\n" + fn("return os.system('id')"), SandboxCompileError),
    Attack("from-import", fn("from subprocess import run\nreturn run(['id'])"), SandboxCompileError),
    Attack("dunder-import", fn("return __import__('os').system('id')"), SandboxCompileError),
    Attack("importlib-name", fn("return importlib.import_module('os')"), OverrideRuntimeError),
    Attack("builtins-import-attr", fn("return __builtins__.__import__('os')"), SandboxCompileError),
    # --- exec, eval, compile, open
    Attack("exec", fn("exec('import os')"), SandboxCompileError),
    Attack("eval", fn("return eval('1 + 1')"), SandboxCompileError),
    Attack("compile", fn("return compile('1', 'x', 'eval')"), SandboxCompileError),
    Attack("open", fn("return open('/etc/passwd').read()"), SandboxCompileError),
    Attack("try-star", fn("try:\n    pass\nexcept* ValueError:\n    pass"), SandboxCompileError),
    Attack("class-with-own-eq-and-hash",
           "class Evil:\n    def __eq__(self, other):\n        return True\n" + fn("return Evil()"),
           SandboxCompileError),
    # --- writes the guards refuse
    Attack("write-builtin-attribute", fn("sorted.cache = []"), SandboxViolation),
    Attack("write-type-attribute", fn("dict.x = 1"), SandboxViolation),
    Attack("iterate-a-function", fn("for x in decide:\n    pass"), SandboxViolation),
    Attack("print-to-a-file", fn('print("x", file=input)'), SandboxViolation),
    Attack("caught-violation-still-fails",
           fn('try:\n    "{0}".format(1)\nexcept Exception:\n    pass\nreturn {"action": "allow"}'),
           SandboxViolation),
    # --- CPU, memory, recursion, output
    Attack("infinite-loop", fn("while True:\n    pass"), SandboxTimeout),
    Attack("infinite-loop-at-import", "while True:\n    pass\n" + fn("return None"), SandboxTimeout),
    Attack("loop-swallowing-everything", fn("while True:\n    try:\n        1 / 0\n    except:\n        pass"),
           SandboxTimeout),
    Attack("huge-sum", fn("return sum(range(10**12))"), SandboxTimeout),
    Attack("huge-integer-power", fn("return 10**10**9"), (SandboxLimitError, SandboxTimeout)),
    Attack("colliding-hashes", fn("return len({i * (2**61 - 1) for i in range(200000)})"), SandboxTimeout),
    Attack("huge-string", fn('x = "a" * (10**10)\nreturn None'), SandboxLimitError),
    Attack("huge-list", fn("x = [0] * (10**9)\nreturn None"), SandboxLimitError),
    Attack("growing-allocation", fn('x = []\nwhile True:\n    x.append("a" * 100000)'),
           (SandboxLimitError, SandboxTimeout)),
    Attack("deep-recursion", "def f(n):\n    return f(n + 1)\n" + fn("return f(0)"), SandboxLimitError),
    Attack("unbounded-print", fn('while True:\n    print("x" * 1000)'), SandboxLimitError),
    Attack("unbounded-print-swallowed",
           fn('try:\n    while True:\n        print("x" * 1000)\nexcept:\n    pass\nreturn {"action": "allow"}'),
           SandboxLimitError),
    Attack("generator-finally-runs-forever",
           "def g():\n    try:\n        yield 1\n    finally:\n        while True:\n            pass\n"
           + fn("x = g()\nfor v in x:\n    break\nbox = [x]\nbox.append(box)\nreturn None"), SandboxTimeout),
    # --- results that are not plain data, or too big
    Attack("return-generator", fn("return (x for x in [1])"), InvalidDecision),
    Attack("return-function", fn('return {"action": "allow", "params": {"f": lambda: 1}}'), InvalidDecision),
    Attack("return-cycle", fn('d = {}\nd["self"] = d\nreturn {"action": "allow", "params": d}'), InvalidDecision),
    Attack("return-set", fn('return {"action": "allow", "params": {"s": {1, 2}}}'), InvalidDecision),
    Attack("return-nan", fn('return {"action": "allow", "params": {"n": float("nan")}}'), InvalidDecision),
    Attack("return-int-keys", fn('return {"action": "allow", "params": {1: "x"}}'), InvalidDecision),
    Attack("return-huge-string", fn('return {"action": "allow", "params": {"x": "a" * 10**6}}'), SandboxLimitError),
    Attack("return-deep-nesting", fn('x = []\nfor i in range(100):\n    x = [x]\n'
                                     'return {"action": "allow", "params": {"x": x}}'), SandboxLimitError),
    Attack("return-many-values", fn('return {"action": "allow", "params": {"x": list(range(900)) * 5}}'),
           SandboxLimitError),
    Attack("return-huge-integer", fn('return {"action": "allow", "params": {"n": 2**70}}'), SandboxLimitError),
    # --- BaseExceptions
    Attack("system-exit", fn("raise SystemExit(0)"), OverrideRuntimeError),
    Attack("keyboard-interrupt", fn("raise KeyboardInterrupt"), OverrideRuntimeError),
    Attack("base-exception", fn("raise BaseException('out')"), OverrideRuntimeError),
    Attack("generator-exit", fn("raise GeneratorExit"), OverrideRuntimeError),
    Attack("huge-exception-message", fn('raise ValueError("x" * 10**7)'), OverrideRuntimeError),
    # --- math: its pure functions by name, nothing behind them
    Attack("math-dunder", "import math\n" + fn("return math.__dict__"), SandboxCompileError),
    Attack("math-function-self", "import math\n" + fn("return math.sqrt.__self__"), SandboxCompileError),
    Attack("math-unknown-attribute", "import math\n" + fn("return math.sys"), SandboxViolation),
    Attack("math-function-attribute", "import math\n" + fn("return math.sqrt.x"), SandboxViolation),
    Attack("math-write", "import math\n" + fn("math.sqrt = len"), SandboxViolation),
    Attack("math-iterate", "import math\n" + fn("for x in math:\n    pass"), SandboxViolation),
    Attack("math-fsum-iterates-through-the-guard", "import math\n" + fn("return math.fsum(decide)"),
           SandboxViolation),
    Attack("from-math-import-unknown", "from math import sys\n" + fn("return None"), SandboxCompileError),
    Attack("from-math-import-star", "from math import *\n" + fn("return None"), SandboxCompileError),
    Attack("import-math-submodule", "import math.os\n" + fn("return None"), SandboxCompileError),
    Attack("import-relative-math", "from .math import sqrt\n" + fn("return None"), SandboxCompileError),
    Attack("import-another-module-with-math", "import math, os\n" + fn("return None"), SandboxCompileError),
    Attack("math-huge-factorial", "import math\n" + fn("return math.factorial(10**7)"),
           (SandboxTimeout, SandboxLimitError)),
    # --- the `str` scripts get stands in for the type, and hands out nothing more
    Attack("str-stand-in-dunder", fn("return str.__call__"), SandboxCompileError),
    Attack("str-stand-in-mro", fn("return str.mro()"), SandboxViolation),
    Attack("str-stand-in-format", fn('return str.format("{0.__class__}", input)'), SandboxViolation),
    Attack("str-stand-in-iterate", fn("for x in str:\n    pass"), SandboxViolation),
    Attack("str-stand-in-write", fn("str.lower = len"), SandboxViolation),
]


@pytest.fixture(scope="module", autouse=True)
def warm_pool() -> None:
    assert shared_pool().wait_ready()


def test_there_are_at_least_30_attacks() -> None:
    assert len(ATTACKS) >= 30
    assert len({a.id for a in ATTACKS}) == len(ATTACKS)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_blocked_or_contained(attack: Attack) -> None:
    caller_input = copy.deepcopy(INPUT)
    with pytest.raises(SandboxError) as info:
        run_override(attack.source, caller_input, TIMEOUT_S)
    assert isinstance(info.value, attack.expect), f"{type(info.value).__name__}: {info.value}"
    assert len(info.value.message) < MAX_MESSAGE_CHARS + 200
    assert caller_input == INPUT
    # The sandbox keeps answering legitimate calls right after.
    assert run_override(LEGIT, INPUT, 2.0) == LEGIT_DECISION


def test_mutating_the_input_never_reaches_the_caller() -> None:
    source = fn('input["agents"].clear()\ninput["kind"] = "action"\ninput["context"]["tags"].append("x")\n'
                'del input["resource"]\nreturn {"action": "allow", "params": {"seen": len(input)}}')
    caller_input = copy.deepcopy(INPUT)
    assert run_override(source, caller_input, 1.0) == {"action": "allow", "params": {"seen": 3}}
    assert caller_input == INPUT


def test_no_state_survives_to_the_next_run() -> None:
    """Module globals, mutable defaults and names from another script: each run starts clean."""
    pool = WorkerPool(size=1)
    try:
        counter = ("seen = []\n" + "def decide(input, memo=[]):\n    seen.append(1)\n    memo.append(1)\n"
                   '    return {"action": "allow", "params": {"seen": len(seen), "memo": len(memo)}}\n')
        pids = set()
        for _ in range(5):
            run = run_override_traced(counter, INPUT, 1.0, pool=pool)
            assert run.decision == {"action": "allow", "params": {"seen": 1, "memo": 1}}
            pids.add(pool.worker_pids()[0])
        assert len(pids) == 1  # the same worker process every time: isolation is per run, not per process
        run_override_traced("SECRET = 'left behind'\n" + fn("return None"), INPUT, 1.0, pool=pool)
        with pytest.raises(OverrideRuntimeError, match="SECRET"):
            run_override_traced(fn('return {"action": "allow", "params": {"s": SECRET}}'), INPUT, 1.0, pool=pool)
        with pytest.raises(SandboxViolation):
            run_override_traced(fn("sorted.stash = input"), INPUT, 1.0, pool=pool)
    finally:
        pool.close()


def test_the_pool_keeps_answering_while_attacks_run() -> None:
    """Two threads keep a pool of three busy with runaway scripts; legitimate calls still get answers."""
    pool = WorkerPool(size=3)
    assert pool.wait_ready()
    stop = threading.Event()
    hostile_errors: list[type[BaseException]] = []

    def attacker() -> None:
        while not stop.is_set():
            try:
                run_override_traced(fn("while True:\n    pass"), INPUT, TIMEOUT_S, pool=pool)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                hostile_errors.append(type(exc))

    threads = [threading.Thread(target=attacker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        answered = 0
        give_up = time.monotonic() + 60
        # Keep asking until the attackers have had six workers killed under them.
        while len(hostile_errors) < 6 and time.monotonic() < give_up:
            assert run_override_traced(LEGIT, INPUT, 1.0, pool=pool).decision == LEGIT_DECISION
            answered += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        pool.close()
    assert len(hostile_errors) >= 6 and set(hostile_errors) == {SandboxTimeout}
    assert answered > len(hostile_errors)


@pytest.mark.parametrize(("call", "args"), [
    ("_getattr_", ({}, "__class__")),
    ("_getattr_", (sorted, "__globals__")),
    ("_getattr_", ((), "__subclasses__")),
    ("_getattr_", ((x for x in []), "gi_frame")),
    ("_getattr_", (ValueError(), "__traceback__")),
    ("_getattr_", ("{0.__class__}", "format")),
    ("_getattr_", (str, "format")),
    ("_getattr_", (sorted, "closure")),
    ("_getitem_", (str, int)),
    ("_getiter_", (str,)),
    ("_write_", (sorted,)),
    ("_inplacevar_", ("+=", sorted, 1)),
])
def test_the_runtime_guards_refuse_even_what_the_compile_wall_stops_first(call: str, args: tuple[Any, ...]) -> None:
    """The second wall on its own: if a name slipped past the compile wall, the guards still say no."""
    ctx = RunContext("overrides/x.py")
    guard = make_globals(ctx)[call]
    with pytest.raises(Refused):
        guard(*args)
    assert ctx.violations


# -------------------------------------------------------------------- text: no addresses, no interpreter objects

MATH = "import math\n"
RENDERINGS: list[tuple[str, str, str, Any]] = [
    # id, statements before, expression, what the script gets
    ("repr-function", "", "repr(decide)", "<function decide>"),
    ("str-function", "", "str(decide)", "<function decide>"),
    ("repr-lambda", "", "repr(lambda: 1)", "<function <lambda>>"),
    ("repr-nested-function", "def inner():\n    pass", "repr(inner)", "<function inner>"),
    ("repr-generator", "", "repr(x for x in [1])", "<generator>"),
    ("str-generator", "", "str(x for x in [1])", "<generator>"),
    ("repr-builtin", "", "repr(len)", "<built-in function len>"),
    ("repr-wrapped-builtin", "", "[repr(sorted), repr(min), repr(repr)]",
     ["<built-in function sorted>", "<built-in function min>", "<built-in function repr>"]),
    ("repr-print", "", "repr(print)", "<built-in function print>"),
    ("repr-bound-method", "", "repr([].append)", "<built-in method append>"),
    ("repr-dict-method", "", "repr(input.get)", "<built-in method get>"),
    ("repr-unbound-method", "", "repr(str.lower)", "<built-in method lower>"),
    ("repr-type", "", "[repr(dict), str(int), repr(str), repr(ValueError)]",
     ["<type dict>", "<type int>", "<type str>", "<type ValueError>"]),
    ("repr-math", MATH, "[repr(math), repr(math.sqrt), repr(math.fsum)]",
     ["<module 'math'>", "<built-in function sqrt>", "<built-in function fsum>"]),
    ("repr-iterators", "", "[repr(enumerate([])), repr(zip([1])), repr(input.keys())]",
     ["<enumerate object>", "<zip object>", "dict_keys(['kind', 'agents', 'resource', 'context'])"]),
    ("repr-nested", "", "repr([decide, {'k': (len,)}, {decide}])",
     "[<function decide>, {'k': (<built-in function len>,)}, {<function decide>}]"),
    ("repr-cycle", "x = [decide]\nx.append(x)", "repr(x)", "[<function decide>, [...]]"),
    ("f-string", "", 'f"{decide}|{decide!r}|{decide!s}|{decide!a}"',
     "<function decide>|<function decide>|<function decide>|<function decide>"),
    ("f-string-spec", "w = 20", 'f"{decide:>20}|{len!r:<{w}}|"', "   <function decide>|<built-in function len>|"),
    ("f-string-containers", "", 'f"{[decide]} {(x for x in [])} {dict}"', "[<function decide>] <generator> <type dict>"),
    ("percent", "", '"%s %r" % (decide, len)', "<function decide> <built-in function len>"),
    ("percent-single", "", '"%s" % decide', "<function decide>"),
    ("percent-mapping", "", '"%(f)s" % {"f": decide}', "<function decide>"),
    ("percent-containers", "", '"%s %s" % ([decide], {"f": sorted})',
     "[<function decide>] {'f': <built-in function sorted>}"),
    ("percent-inplace", 's = "%s!"\ns %= decide', "s", "<function decide>!"),
    ("exception-args", "", "[str(KeyError(decide)), repr(ValueError(decide, 1)), str(ValueError(decide))]",
     ["<function decide>", "ValueError(<function decide>, 1)", "<function decide>"]),
    ("c-written-message", "try:\n    [].index(decide)\nexcept ValueError as e:\n    err = e",
     "[str(err), repr(err), err.args[0], f'{err}', '%s' % err]",
     ["<function decide> is not in list", "ValueError('<function decide> is not in list')",
      "<function decide> is not in list", "<function decide> is not in list", "<function decide> is not in list"]),
    # Plain data is written exactly as Python writes it.
    ("plain-data", "", "repr({'a': [1, 2.5, None, True, 'x<y', (1,)], 'b': set(), 'c': frozenset([2])})",
     "{'a': [1, 2.5, None, True, 'x<y', (1,)], 'b': set(), 'c': frozenset({2})}"),
    ("plain-range", "", "[repr(range(3)), str(range(1, 4, 2))]", ["range(0, 3)", "range(1, 4, 2)"]),
    ("plain-formats", "", '"%.2f|%05d|%-3s|%x|%r" % (3.14159, 42, "x", 255, "q") + f"|{2.5:.1%}|{7:b}|{None}|{True}"',
     "3.14|00042|x  |ff|'q'|250.0%|111|None|True"),
    ("plain-modulo", "", "[7 % 3, -7 % 3, 7.5 % 2, input['resource']['port'] % 5]", [1, 2, 1.5, 2]),
    ("hex-stays-hex", "", "[hex(255), '0x%x' % 255]", ["0xff", "0xff"]),
    ("str-of-values", "", "str(12) + str(1.5) + str(True) + str(None) + str() + str(object='!')", "121.5TrueNone!"),
    ("str-decodes-bytes", "", "str('é'.encode(), 'utf-8') + str(b'ab')", "éb'ab'"),
    ("isinstance-str", "", "[isinstance('a', str), isinstance(1, (str, int)), isinstance(1, str)]",
     [True, True, False]),
    ("str-methods", "", "str.upper('a') + str.join('-', ['a', 'b'])", "Aa-b"),
    ("sorted-key-str", "", "sorted([10, 9, 100], key=str)", [10, 100, 9]),
]


@pytest.mark.parametrize(("setup", "expression", "expected"), [c[1:] for c in RENDERINGS],
                         ids=[c[0] for c in RENDERINGS])
def test_text_of_internals_shows_no_address(setup: str, expression: str, expected: Any) -> None:
    prelude = MATH if setup == MATH else ""
    body = ("" if setup == MATH else setup + "\n") + f'return {{"action": "allow", "params": {{"text": {expression}}}}}'
    decision = run_override(prelude + fn(body), INPUT, 2.0)
    assert decision is not None
    assert decision["params"]["text"] == expected
    if "hex" not in expression:
        assert "0x" not in orjson.dumps(decision).decode()


def test_print_shows_no_address() -> None:
    run = run_override_traced(fn("print(decide, len, [decide], input.get, (x for x in []))\nreturn None"),
                              INPUT, 2.0)
    assert run.printed == "<function decide> <built-in function len> [<function decide>] <built-in method get> " \
                          "<generator>\n"


@pytest.mark.parametrize(("body", "message"), [
    ("raise ValueError(decide)", "ValueError: <function decide>"),
    ("return input[decide]", "KeyError: <function decide>"),
    ("return [].index(decide)", "ValueError: <function decide> is not in list"),
    ("return {}.pop(sorted)", "KeyError: <built-in function sorted>"),
])
def test_error_messages_show_no_address(body: str, message: str) -> None:
    with pytest.raises(OverrideRuntimeError) as info:
        run_override(fn(body), INPUT, 2.0)
    assert message in info.value.message
    assert "0x" not in info.value.message


def test_the_boundary_scrubs_whatever_slipped_through() -> None:
    """The last line, on its own: a response holding CPython's default reprs leaves the worker without addresses."""
    leaked = {"ok": True, "printed": f"{len!r} {object()!r}",
              "result": {"action": "allow", "params": {"f": repr(test_the_boundary_scrubs_whatever_slipped_through),
                                                       f"{object()!r}": [repr([].append)], "hex": "0xff"}}}
    assert " at 0x" in orjson.dumps(leaked).decode()
    body = encode_response(leaked, walls=True)
    text = body.decode()
    assert " at 0x" not in text and "0xff" in text
    clean = orjson.loads(body)
    assert clean["result"]["params"]["f"] == "<function test_the_boundary_scrubs_whatever_slipped_through>"
    assert clean["printed"] == "<built-in function len> <object object>"
    assert scrub_addresses("<frame at 0x7f00deadbeef, file 'x', line 1>") == "<frame, file 'x', line 1>"


def test_math_is_importable_in_every_form() -> None:
    source = ("import math\nimport math as m\nfrom math import sqrt, pi as PI\n"
              + fn("inner_import = 1\n"
                   "return {'action': 'allow', 'params': {'v': [math.sqrt(16), m.floor(2.7), sqrt(9), PI == math.pi,"
                   " math.isclose(0.1 + 0.2, 0.3), math.fsum([0.1] * 10), math.prod([1, 2, 3]), math.log(math.e),"
                   " math.ceil(1.1), math.dist([0, 0], [3, 4]), math.isinf(math.inf), math.isnan(math.nan),"
                   " math.gcd(12, 18), round(math.tau, 2)]}}"))
    decision = run_override(source, INPUT, 2.0)
    assert decision is not None
    assert decision["params"]["v"] == [4.0, 2, 3.0, True, True, 1.0, 6, 1.0, 2, 5.0, True, True, 6, 6.28]
    inside = fn("import math\nreturn {'action': 'allow', 'params': {'r': math.sqrt(4)}}")
    assert run_override(inside, INPUT, 2.0) == {"action": "allow", "params": {"r": 2.0}}
