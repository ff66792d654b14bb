"""Log template mining: mask the variables of a log line and group lines by the statement that logged them.

Two stages, one default configuration for every kind of log:

1. :func:`mask` replaces what is obviously a value with ``<*>``: any word that
   contains a digit (numbers, ids, hex, versions, addresses and ports), URLs,
   paths, timestamps, UUIDs, MAC and IPv6 addresses, boolean and null literals
   and quoted ``key="…"`` values. A quantity with its unit and its conversion
   to another unit (``1190 bytes (1.16 KB)``) and a run of values (``3 4 5``)
   become one ``<*>``. Nothing else is masked by its looks alone: a word
   without a digit (``httpd``, ``'Inactive'``) is a value only when the miner
   sees it vary.
2. :class:`TemplateMiner` groups the masked lines. A line that differs from
   one seen before only in its digits, or masks to the same text, costs a dict
   look-up. A masked line not seen before is compared with the templates of
   the same length, and values without digits (user names, host names,
   service names) are recognised because they vary where the rest of the line
   does not:

   - a slot that holds ``<*>`` in one line holds a value in every line of that
     statement, whatever the other lines put there (``for user root`` joins
     ``for user <*>``; ``LOCAL(<*>)`` joins ``<*>``);
   - a word slot becomes ``<*>`` once it has taken three different values with
     everything else equal (``session closed for user cyrus|news|test``). Two
     values are not enough: ``Link up`` and ``Link down`` are two statements.
     Words that name the event rather than a value never vary into ``<*>``:
     upper-case constants (``GET``, ``POST``, ``RUNNING``), inflected verbs
     (``Started``, ``Paused``, ``initializing``), and the first word of a
     message, unless it is a qualified name such as ``com.apple.job.daily``;
   - words that vary together (a service, a host and a user in one line) are
     variables the same way, a few slots at once: when each has taken three
     values with the rest of the line equal, and the fixed words outnumber them;
   - a form the generalised one now covers joins it: a line seen before its
     statement was generalised, differing from every other in two values at once
     (``user frank … on golf``), is one of its lines, as it would be had it come
     later. What the miner says does not depend on the order of the lines.

Each rule is there because software writes values that way, not because a
label set groups them so; ``bench/loghub.py`` measures each one by ablation on
two label sets and on templates held out of tuning.

Template ids are stable handles: ``add`` returns the id of the template that
covers the line now; when a later line shows that two templates are one, the
newer id is merged into the older one and :meth:`TemplateMiner.resolve` (and
:meth:`TemplateMiner.template_of`) follow the merge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

WILDCARD = "<*>"

# Characters that end a word: whitespace and the punctuation that separates
# keys from values and values from each other.
_SEP = r"\s=,;:()\[\]{}\"'|"
_AT_WORD_START = rf"(?<![^{_SEP}])"
_AT_WORD_END = rf"(?![^{_SEP}])"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?"
_HEX4 = r"[0-9A-Fa-f]{1,4}"

# What a value looks like, tried in this order at the start of each word;
# named so that bench/loghub.py can measure each by leaving it out.
VALUE_PATTERNS: dict[str, str] = {
    "url": r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*",
    # syslog and ctime timestamps: "Sun Jul  3 10:05:25 2005", "Jul 3 10:05:25"
    "clock-time": rf"(?:{_WEEKDAY},?\s+)?{_MONTH}\s+\d{{1,2}},?\s+(?:\d{{4}}\s+)?\d{{1,2}}:\d{{2}}"
    r"(?::\d{2}(?:[.,]\d+)?)?(?:\s+(?:[A-Z]{1,3}T|UTC))?(?:\s+\d{4})?" + _AT_WORD_END,
    # MAC address and other colon-separated hex bytes
    "mac": r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){3,15}+(?![\w:])",
    # IPv6: hex groups and colons, with a digit among the first 40 characters
    "ipv6": rf"(?=[0-9A-Fa-f:]{{0,40}}\d)(?:{_HEX4})?(?:::?{_HEX4}){{2,7}}+(?:::)?(?:%\w+)?(?![\w:.])",
    # Unix path, with an optional query string
    "unix-path": r"(?:~|\.{1,2})?(?:/[\w.@%+~$#*-]+)+/?(?:\?[^\s\"']*)?",
    "windows-path": r"(?:[A-Za-z]:|\\\\[?.])\\[^\s\"'<>|]*",
    "bool-null": r"(?:true|false|null|True|False|Null|TRUE|FALSE|NULL)" + _AT_WORD_END,
    # any other word with a digit: numbers, ids, hex, UUIDs, versions, IPv4
    # addresses, ISO timestamps (their parts join up below)
    "digit-word": rf"[^{_SEP}\d]*+\d[^{_SEP}]*+",
}


def value_regex(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex that matches, at the start of a word, a value of any of ``patterns``."""
    return re.compile(_AT_WORD_START + "(?:" + "|".join(patterns) + ")")


_VALUE = value_regex(VALUE_PATTERNS.values())
# A quoted value after "=" (tag="View Lock") is a value. A quoted word
# elsewhere ('sparkExecutorActorSystem', 'Inactive') is not masked by its
# looks: it is as often a constant as a value, and the miner makes it a
# variable once it varies.
_QUOTED_VALUE = re.compile(r"=\s*([\"'])[^\"']*\1")
_UNITS = r"(?:bytes?|[KMGTP]?i?B|ms|us|ns|s|secs?|seconds?|mins?|minutes?|hours?|days?|%)"
# A quantity followed by its conversion to another unit is one value printed
# twice ("1190 bytes (1.16 KB)", "3600 s (1 hours)"); a program prints the
# second form only for some values ("0 bytes" has none). Only a quantity: a
# number followed by a parenthesised name ("27154 (httpd)", "0 (usable)") is
# left to the miner, which treats both parts alike.
_CONVERSION = re.compile(rf"<\*>\s*{_UNITS}\s*\(\s*<\*>\s*{_UNITS}\s*\)")
# A unit after a value belongs to it ("1190 bytes", "0.5 sec.").
_UNIT = re.compile(rf"<\*>\s*{_UNITS}(?![\w-])\.?")
# Values separated only by spaces or punctuation are one value of variable
# length: "3 4 5", "2005-07-03 10:05:25", "10.0.0.1:80".
_RUN = re.compile(r"<\*>(?:[\s.,:;/_#@|~+-]*<\*>)+")
_EMPTY = (("()", "(<*>)"), ("[]", "[<*>]"), ("{}", "{<*>}"), ('""', '"<*>"'), ("''", "'<*>'"))


def mask(line: str) -> str:
    """Return ``line`` with its variable parts replaced by ``<*>`` and spaces normalised."""
    if '"' in line or "'" in line:
        line = _QUOTED_VALUE.sub(r"=\1<*>\1", line)
    line = _VALUE.sub(WILDCARD, line)
    for empty, filled in _EMPTY:
        if empty in line:
            # An empty value is still a value: "()" where others print "(host)".
            line = line.replace(empty, filled)
    if WILDCARD in line:
        line = _CONVERSION.sub(WILDCARD, line)
        line = _UNIT.sub(WILDCARD, line)
        line = _RUN.sub(WILDCARD, line)
    return " ".join(line.split())


@dataclass(frozen=True)
class Template:
    """A group of log lines from one logging statement."""

    id: int
    text: str
    count: int
    examples: tuple[str, ...]


# Splitting a masked line into words and separators, each its own token; a
# single space separates the words of the masked line.
_TOKEN = re.compile(rf"[^{_SEP}]+|[=:,;()\[\]{{}}\"'|]| ")
_SEPARATORS = frozenset("=:,;()[]{}\"'| ")
_CONSTANT = re.compile(r"[A-Z][A-Z_]+")  # GET, RUNNING, CBS_E_INVALID: enum constants
_INFLECTED = re.compile(r"[A-Za-z]{3,}(?:ed|ing)")  # Started, Paused, initializing: the event
_QUALIFIED = re.compile(r"[A-Za-z_][\w$-]*(?:[./]+[A-Za-z_$][\w$-]*){2,}")  # com.apple.job.daily
_HAS_LETTER = re.compile(r"[A-Za-z]")
# A word slot with this many different values, everything else equal, is a
# variable; so is one with many values that look like constants.
_VALUES_FOR_VARIABLE = 3
_MANY_VALUES = 16
# Words that vary together (a user and a host in one line): at most this many slots at once,
# each a variable once it has taken three values with the rest equal, as one slot does.
_MAX_SLOTS_TOGETHER = 3
_MAX_TOGETHER_TRACKED = 100_000
# A line takes a form's longer values only when both share this many fixed words.
_MIN_WORDS_TO_ABSORB = 2
_MAX_EXAMPLES = 3
_MAX_EXAMPLE_CHARS = 2000
_MAX_SEEN_BYTES = 4096
_MAX_LINE_CHARS = 65536
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _can_vary(word: str) -> bool:
    """Whether ``word`` may be one value of a variable slot rather than part of the statement."""
    return not (
        word == WILDCARD
        or word in _SEPARATORS
        or _CONSTANT.fullmatch(word) is not None
        or _INFLECTED.fullmatch(word) is not None
    )


def _vary_together(form: list[str], tokens: list[str], slots: list[int], lead: int) -> bool:
    """Whether a line that differs from ``form`` in a few ``slots`` may be the same statement.

    Each slot holds a word on both sides that can be a value (not the first word, not a
    separator, constant or inflected verb); the caller has checked that the fixed words they
    share outnumber the slots: ``service redis on node bravo restarted by bob`` and
    ``service kafka on node golf restarted by erin`` share "service", "on node", "restarted by".
    """
    return lead not in slots and all(_can_vary(form[i]) and _can_vary(tokens[i]) for i in slots)


def _takes_value(word: str, token: str) -> bool:
    """Whether a form's ``word`` is a variable because a line has a value (``<*>``) in its place."""
    return token == WILDCARD and word not in _SEPARATORS


def _chunks(tokens: list[str]) -> list[tuple[str, ...]]:
    """The space-separated parts of a tokenised line, each a tuple of tokens."""
    out: list[tuple[str, ...]] = []
    start = 0
    for i, tok in enumerate(tokens):
        if tok == " ":
            out.append(tuple(tokens[start:i]))
            start = i + 1
    out.append(tuple(tokens[start:]))
    return out


def _shape(chunks: list[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """The line with every space-separated part that holds a value reduced to one wildcard."""
    return tuple((WILDCARD,) if WILDCARD in c else c for c in chunks)


def _absorb(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...] | None:
    """The more general of two parts that both hold a value, or None.

    A part that is nothing but a value (``<*>,``) takes any other (``LOCAL(<*>),``,
    ``host.example:<*>``); ``ws=<*>,`` takes ``ws=WorkSource{<*>},`` because they
    differ only where the first has ``<*>``. ``AuthFail:<*>`` and
    ``AssocFail:<*>`` have no such relation.
    """
    if all(t == WILDCARD or t in _SEPARATORS for t in a):
        return a
    if all(t == WILDCARD or t in _SEPARATORS for t in b):
        return b
    n = min(len(a), len(b))
    head = 0
    while head < n and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < n - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    mid_a = a[head : len(a) - tail]
    mid_b = b[head : len(b) - tail]
    if mid_a == (WILDCARD,) and WILDCARD in mid_b:
        return a
    if mid_b == (WILDCARD,) and WILDCARD in mid_a:
        return b
    return None


class TemplateMiner:
    """Streaming template miner: feed lines with :meth:`add`, read :meth:`templates`.

    Memory grows with the number of templates, not of lines: the caches of
    seen lines are emptied when they reach ``max_cached`` entries (lines then
    take the slower path once more), and each template keeps at most three
    example lines of at most 2,000 characters. A line longer than 64 KiB is
    mined by its first 64 KiB.
    """

    def __init__(self, *, max_cached: int = 200_000) -> None:
        self._max_cached = max_cached
        self._seen: dict[bytes, int] = {}  # line with its digits zeroed -> template id
        self._cache: dict[str, int] = {}  # masked line -> template id
        # Every template id names a form: the tokens of a masked line, with
        # wildcards where it was generalised. Forms found to belong together
        # are merged into the oldest one (union-find over ids); a merged form
        # of another shape stays indexed so that lines of that shape find it.
        self._parent: list[int] = []
        self._form: list[list[str]] = []
        self._text: list[str] = []  # for a live template: its most general form, as text
        self._counts: list[int] = []
        self._examples: list[list[str]] = []
        # (length, position, token) of a form's first fixed token -> forms
        self._by_anchor: dict[tuple[int, int, str], list[int]] = {}
        self._by_shape: dict[tuple[tuple[str, ...], ...], list[int]] = {}
        self._by_length: dict[int, set[int]] = {}  # length -> live forms of that many tokens
        self._slot_values: dict[tuple[int, int], dict[str, int]] = {}  # (form, slot) -> value -> form
        self._lead_values: dict[tuple[int, tuple[str, ...]], dict[str, int]] = {}
        # (form, slots) -> the words in those slots -> form: words that vary together
        self._together_values: dict[tuple[int, tuple[int, ...]], dict[tuple[str, ...], int]] = {}

    def add(self, line: str) -> int:
        """Mine one line; return the id of the template that covers it now."""
        if len(line) > _MAX_LINE_CHARS:
            line = line[:_MAX_LINE_CHARS]  # the statement shows in its first 64 KiB
        # Masking treats every ASCII digit alike, so lines that differ only in
        # their digits share a template: a bytes.translate and a dict look-up
        # answer most lines without masking them.
        seen = line.encode("utf-8", "surrogatepass").translate(_DIGITS_AS_ZERO)
        tid = self._seen.get(seen)
        if tid is None:
            key = mask(line)
            tid = self._cache.get(key)
            if tid is None:
                tid = self._insert(key, line)
                if len(self._cache) >= self._max_cached:
                    self._cache.clear()
                self._cache[key] = tid
            if len(self._seen) >= self._max_cached:
                self._seen.clear()
            if len(seen) <= _MAX_SEEN_BYTES:
                self._seen[seen] = tid
        if self._parent[tid] != tid:
            tid = self.resolve(tid)
            self._seen[seen] = tid
        self._counts[tid] += 1
        return tid

    def resolve(self, template_id: int) -> int:
        """The id of the template that ``template_id`` is now part of (itself unless merged)."""
        parent = self._parent
        if not 0 <= template_id < len(parent):
            raise KeyError(f"unknown template id {template_id}")
        root = template_id
        while parent[root] != root:
            root = parent[root]
        while parent[template_id] != root:
            parent[template_id], template_id = root, parent[template_id]
        return root

    def template_of(self, template_id: int) -> Template:
        """The template that ``template_id`` is now part of."""
        tid = self.resolve(template_id)
        return Template(
            id=tid,
            text=self._text[tid],
            count=self._counts[tid],
            examples=tuple(self._examples[tid]),
        )

    def templates(self) -> list[Template]:
        """Every live template, most frequent first (ties: oldest first)."""
        live = [t for t, p in enumerate(self._parent) if p == t]
        live.sort(key=lambda t: (-self._counts[t], t))
        return [self.template_of(t) for t in live]

    def __len__(self) -> int:
        """The number of live templates."""
        return sum(1 for t, p in enumerate(self._parent) if p == t)

    # -- the slow path: a masked line not seen before -------------------------

    def _insert(self, key: str, line: str) -> int:
        tokens = _TOKEN.findall(key) or [""]
        tid = self._match(tokens)
        tid = self.resolve(tid)
        examples = self._examples[tid]
        if len(examples) < _MAX_EXAMPLES:
            examples.append(line[:_MAX_EXAMPLE_CHARS])
        return tid

    def _match(self, tokens: list[str]) -> int:
        """The form that covers ``tokens``, generalising or creating forms as needed."""
        n = len(tokens)
        near: list[tuple[int, int]] = []  # (form, slot): differs from it in one value-like word
        lead = next((i for i, t in enumerate(tokens) if t not in _SEPARATORS), -1)
        candidates: list[int] = list(self._by_anchor.get((n, -1, ""), ()))
        for i, token in enumerate(tokens):
            candidates.extend(self._by_anchor.get((n, i, token), ()))
        together: list[tuple[int, tuple[int, ...]]] = []  # (form, slots): differs in a few words at once
        for tid in candidates:
            have = self._form[tid]
            slots: list[int] = []
            shared = 0  # fixed words both have
            for i in range(n):
                word = have[i]
                if word == WILDCARD:
                    continue
                if word == tokens[i]:
                    shared += word not in _SEPARATORS
                    continue
                slots.append(i)
                if len(slots) > _MAX_SLOTS_TOGETHER:
                    break
            if not slots:
                return tid
            if len(slots) == 1:
                slot = slots[0]
                if _takes_value(have[slot], tokens[slot]):
                    self._generalise(tid, slot, self._slot_values.pop((tid, slot), {}).values())
                    return tid
                if slot != lead and have[slot] not in _SEPARATORS and tokens[slot] not in _SEPARATORS:
                    near.append((tid, slot))
            elif len(slots) <= _MAX_SLOTS_TOGETHER and shared > len(slots) and _vary_together(have, tokens, slots, lead):
                together.append((tid, tuple(slots)))
        absorbed = self._absorb_into(tokens)
        if absorbed is not None:
            return absorbed
        tid = self._new_form(tokens)
        for other, slot in near:
            if not self._form[other] or self._form[other][slot] == WILDCARD:
                continue  # merged away or generalised by an earlier near miss
            values = self._slot_values.setdefault((other, slot), {})
            values.setdefault(self._form[other][slot], other)
            values[tokens[slot]] = tid
            if len(values) >= _VALUES_FOR_VARIABLE and (
                len(values) >= _MANY_VALUES or all(_can_vary(v) for v in values)
            ):
                del self._slot_values[(other, slot)]
                self._generalise(other, slot, values.values())
        for other, group in together:
            if not self._form[other] or any(self._form[other][i] == WILDCARD for i in group):
                continue
            seen = self._together_values.get((other, group))
            if seen is None:
                if len(self._together_values) >= _MAX_TOGETHER_TRACKED:
                    continue  # text with no statements in it (random words): stop tracking, stay bounded
                seen = self._together_values[(other, group)] = {}
            seen.setdefault(tuple(self._form[other][i] for i in group), other)
            seen[tuple(tokens[i] for i in group)] = tid
            if all(len({values[k] for values in seen}) >= _VALUES_FOR_VARIABLE for k in range(len(group))):
                del self._together_values[(other, group)]
                for i in group[:-1]:
                    self._generalise(other, i, ())
                self._generalise(other, group[-1], seen.values())
                break
        if lead >= 0 and _QUALIFIED.fullmatch(tokens[lead]):
            rest = (lead, tuple(tokens[:lead] + tokens[lead + 1 :]))
            values = self._lead_values.setdefault(rest, {})
            values[tokens[lead]] = tid
            if len(values) >= _VALUES_FOR_VARIABLE:
                del self._lead_values[rest]
                self._generalise(min(values.values()), lead, values.values())
        return tid

    def _absorb_into(self, tokens: list[str]) -> int | None:
        """A form whose value slots take this line's longer values (``LOCAL(<*>)`` for ``<*>``)."""
        chunks = _chunks(tokens)
        shape = _shape(chunks)
        words = sum(1 for c in shape if c != (WILDCARD,) and any(_HAS_LETTER.search(t) for t in c))
        if words < _MIN_WORDS_TO_ABSORB:  # too little fixed text to tell statements apart
            return None
        for tid in self._by_shape.get(shape, []):
            merged: list[tuple[str, ...]] = []
            for a, b in zip(chunks, _chunks(self._form[tid]), strict=True):
                part = b if a == b else _absorb(a, b)
                if part is None:
                    break
                merged.append(part)
            else:
                general = _join(merged)
                if general == self._form[tid]:
                    return tid
                # Keep both shapes findable: a new form, merged into the old one.
                form = self._new_form(general)
                root = self.resolve(tid)
                self._parent[form] = root
                self._text[root] = self._text[form]
                self._take_covered(form)  # other forms the more general one now covers
                return self.resolve(form)
        return None

    def _new_form(self, tokens: list[str]) -> int:
        tid = len(self._parent)
        self._parent.append(tid)
        self._form.append(list(tokens))
        self._text.append("".join(tokens))
        self._counts.append(0)
        self._examples.append([])
        self._index(tid)
        return tid

    def _generalise(self, tid: int, slot: int, members: Iterable[int]) -> None:
        """Make ``slot`` of form ``tid`` a wildcard and merge the forms ``members`` into it.

        The members differ from ``tid`` only in that slot, so the generalised
        form covers them and they leave the index.
        """
        members = [m for m in members if m != tid]
        form = self._form[tid]
        self._unindex(tid)
        form[slot] = WILDCARD
        for m in members:
            # A member may have been generalised elsewhere since: keep that too.
            for i, word in enumerate(self._form[m]):
                if word == WILDCARD and i < len(form):
                    form[i] = WILDCARD
        self._index(tid)
        self._merge(tid, members)  # they leave the index there
        self._take_covered(tid)

    def _covered_by(self, tid: int) -> tuple[list[int], list[int]]:
        """The other forms ``tid`` now covers: of its length, and of its shape with longer values.

        A line is matched the same way: a form's wildcards take any word, and its value
        parts take longer values (``host.example:<*>`` where it has ``<*>``, `_absorb_into`).
        A form made before ``tid`` became this general (``user frank … on golf`` before
        ``user <*> … on <*>`` existed) holds lines of its statement too; without this, what
        the miner says would depend on the order of the lines.
        """
        form = self._form[tid]
        fixed = [(i, word) for i, word in enumerate(form) if word != WILDCARD]
        root = self.resolve(tid)
        same = [other for other in self._by_length.get(len(form), ())
                if self.resolve(other) != root and all(self._form[other][i] == word for i, word in fixed)]
        chunks = _chunks(form)
        longer = [other for other in self._by_shape.get(_shape(chunks), ())
                  if len(self._form[other]) != len(form) and self.resolve(other) != root
                  and all(a == b or _absorb(a, b) == b for a, b in zip(_chunks(self._form[other]), chunks, strict=True))]
        return same, longer

    def _take_covered(self, tid: int) -> None:
        """Merge into ``tid``'s template every form it now covers (the longer shapes stay findable)."""
        same, longer = self._covered_by(tid)
        self._merge(tid, same)
        self._merge(tid, longer, keep_forms=True)

    def _merge(self, tid: int, members: list[int], keep_forms: bool = False) -> None:
        """Merge the forms ``members``, which ``tid``'s form covers, into ``tid``'s template."""
        form = self._form[tid]
        if not keep_forms:
            for m in members:
                if self._form[m]:
                    self._unindex(m)
                    self._form[m] = []
        roots = {self.resolve(m) for m in members}
        roots.add(self.resolve(tid))
        root = min(roots)
        for r in roots:
            if r != root:
                self._parent[r] = root
                self._counts[root] += self._counts[r]
                self._counts[r] = 0
                room = _MAX_EXAMPLES - len(self._examples[root])
                self._examples[root].extend(self._examples[r][:room])
                self._examples[r] = []
        self._text[root] = "".join(form)

    def _index(self, tid: int) -> None:
        form = self._form[tid]
        self._by_anchor.setdefault(_anchor(form), []).append(tid)
        self._by_shape.setdefault(_shape(_chunks(form)), []).append(tid)
        self._by_length.setdefault(len(form), set()).add(tid)

    def _unindex(self, tid: int) -> None:
        form = self._form[tid]
        if not form:
            return
        bucket = self._by_anchor.get(_anchor(form))
        if bucket and tid in bucket:
            bucket.remove(tid)
        same = self._by_shape.get(_shape(_chunks(form)))
        if same and tid in same:
            same.remove(tid)
        self._by_length.get(len(form), set()).discard(tid)


def _anchor(form: list[str]) -> tuple[int, int, str]:
    """The key under which a line can find ``form``: its length and its first fixed token."""
    for i, token in enumerate(form):
        if token != WILDCARD:
            return len(form), i, token
    return len(form), -1, ""


def _join(chunks: list[tuple[str, ...]]) -> list[str]:
    tokens: list[str] = []
    for chunk in chunks:
        if tokens:
            tokens.append(" ")
        tokens.extend(chunk)
    return tokens
