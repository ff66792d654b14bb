"""Secret redaction: the one masker for whatever policyctl copies out of the logs (PR bodies, prompts, evidence, reports).

Built on detect-secrets (Yelp's maintained detector): its regex plugins find the token
shapes of the cloud, forge and chat vendors, its keyword list names the secret-sounding
keys, and its Shannon-entropy functions judge random-looking strings. Around them, the
project's own rules for what a log line holds and a code scanner does not look for: whole
private-key blocks of every armour, passwords in URLs, Authorization and Cookie headers of
any case, shell flags (`sshpass -p`, `mysql -pX`, `--password x`), quoted values with
spaces, e-mail and IP addresses, and unquoted random tokens of any case.

Placeholders: `<private-key>`; `<password>` (in a URL or on a command line); `<token>` (a
known token shape, or the credential of an Authorization header); `<redacted>` (the value
of a secret-sounding key); `<secret>` (a random-looking string); `<email>`; `<ip>`.

What is left alone: ordinary log words, ids such as `etl-3` or `fs-10`, ports, host names,
UUIDs, numbers, file names of words and dates, and hex of fewer than 32 digits (commit
abbreviations, request ids: too short for a credential). Hex of 32 digits or more is
masked unless a label says it is a digest or an id (`commit 3f1c…`, `sha256:…`,
`"revision": "…"`), or `redact_value` finds it under an id key (`id`, `trace_id`,
`revision`): a 32-digit API key and an MD5 look the same, and only the label tells them apart.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

PLACEHOLDERS = ("<private-key>", "<password>", "<token>", "<redacted>", "<secret>", "<email>", "<ip>")
_CACHE_CHARS = 4096  # longer texts (Rego modules, whole bodies) are masked each time, not cached
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_HEX = frozenset("0123456789abcdefABCDEF")


# --------------------------------------------------------------------------- detect-secrets


@functools.cache
def _detectors() -> tuple[Any, ...]:
    """detect-secrets' regex plugins with their default settings, loaded on first use (the import takes 0.2 s).

    Its public-IP plugin is left out (every address is masked here, private ones too), and
    its private-key plugin only names a block's first line: whole blocks are masked by the
    rules below, and the plugin is the safety net after them."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.ip_public import IPPublicDetector

    plugins: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
    return tuple(cls() for cls in plugins if issubclass(cls, RegexBasedDetector) and cls is not IPPublicDetector)


@functools.cache
def _entropy() -> tuple[Callable[[str], float], Callable[[str], float], float]:
    """detect-secrets' Shannon entropy over the base64 and the hex alphabet, and its hex limit (3.0)."""
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )

    b64, hexa = Base64HighEntropyString(), HexHighEntropyString()
    return b64.calculate_shannon_entropy, hexa.calculate_shannon_entropy, hexa.entropy_limit


@functools.cache
def _key_names() -> str:
    """detect-secrets' secret keywords (`api_?key`, `password`, `pwd`, `secret`, …) and the project's own."""
    from detect_secrets.plugins.keyword import DENYLIST

    own = (r"pass(?:word|wd|phrase)|token|api[_-]?key|access[_-]?key(?:[_-]?id)?|private[_-]?key(?:[_-]?id)?"
           r"|account[_-]?key|credentials?|auth(?:orization)?|sess(?:ion)?[_-]?id|cookie|sig(?:nature)?")
    return "|".join((*DENYLIST, own))


# --------------------------------------------------------------------------- the project's rules


def _keep_quotes(value: str, placeholder: str) -> str:
    """`'<password>'` for `'x y'`: the quotes stay, so a reader still sees where the value was."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[0] + placeholder + value[0]
    return placeholder


def _credential_like(cred: str) -> bool:
    """A header credential, not a word: digits, inner capitals, token punctuation, or length."""
    return (any(c.isdigit() for c in cred) or any(c.isupper() for c in cred[1:]) and any(c.islower() for c in cred)
            or any(c in "._~+/=" for c in cred) or len(cred) >= 16)


def _scheme(m: re.Match[str]) -> str:
    scheme, cred = m["scheme"], m["cred"]
    strict = scheme.lower() in ("token", "negotiate")  # `token expired`, `token validation`: words follow these
    looks = any(c.isdigit() for c in cred) or any(c.isupper() for c in cred[1:]) if strict else _credential_like(cred)
    return f"{scheme}{m['sp']}<token>" if looks else m[0]


def _flag(m: re.Match[str]) -> str:
    return m["pre"] + _keep_quotes(m["v"], "<password>")


def _key_value(m: re.Match[str]) -> str:
    if m["quoted"] is not None:
        if not m["quoted"] or m["quoted"].startswith("<"):
            return m[0]
        return f"{m['key']}{m['sep']}{m['q']}<redacted>{m['q']}"
    return f"{m['key']}{m['sep']}<redacted>"


def _ipv6(m: re.Match[str]) -> str:
    text = m[0]
    if not any(c.isdigit() for c in text):
        return text  # `a::b`, `::` are valid addresses on paper, and names in code
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return text  # a time of day, a MAC address, a C++ name: not an address
    return "<ip>"


_QUOTED = r"'[^'\n]*'|\"[^\"\n]*\""
_SHELL_END = r"[^\n|;&]*?"  # within one command of a pipeline


# Each rule runs only on a text holding one of its hints (lower case): most log lines hold none,
# and a regex that scans every position of a line costs more than ten substring tests.
_KEY_HINTS = ("key", "pass", "pwd", "secret", "token", "auth", "cred", "cookie", "sess", "sig", "contras")


@functools.cache
def _rules() -> list[tuple[tuple[str, ...], re.Pattern[str], str | Callable[[re.Match[str]], str]]]:
    """The project's rules in order: whole blocks and URL credentials before key=value, headers before
    their keys, known token shapes before e-mail addresses, IPv6 (which may embed an IPv4) before IPv4."""
    keys = _key_names()
    return [
        (("private key", "secret key"),
         re.compile(r"-{4,5} ?BEGIN [A-Z0-9 ]*(?:PRIVATE|SECRET) KEY(?: BLOCK)? ?-{4,5}.*?"
                    r"(?:-{4,5} ?END [A-Z0-9 ]*(?:PRIVATE|SECRET) KEY(?: BLOCK)? ?-{4,5}|\Z)", re.S | re.I),
         "<private-key>"),
        (("putty-user-key",), re.compile(r"PuTTY-User-Key-File-\d+:.*?(?:Private-MAC: *[0-9a-fA-F]+|\Z)", re.S),
         "<private-key>"),
        # webhook URLs are credentials in their path: keep the host, so a reader sees which service
        (("hooks.slack",), re.compile(r"(?P<pre>https?://hooks\.slack\.com/)(?:services|workflows|triggers)/[\w/-]+",
                                      re.I), r"\g<pre><token>"),
        (("discord",), re.compile(r"(?P<pre>https?://(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/)[\w/-]+", re.I),
         r"\g<pre><token>"),
        (("webhook.office",), re.compile(r"(?P<pre>https?://[\w.-]+\.webhook\.office\.com/)[\w/@-]+", re.I),
         r"\g<pre><token>"),
        # the password runs to the last `@` before the host: `/` and `@` in it are common, and unencoded
        (("://",), re.compile(r"(?P<pre>\b[a-z][a-z0-9+.-]*://[^\s:/@\"'<>]*:)[^\s\"<>]+@"
                              r"(?=[\w\[][\w.\[\]:-]*(?:[/?#\s\"'<>),;]|$))", re.I), r"\g<pre><password>@"),
        (("cookie",), re.compile(r"(?i)\b(?P<h>(?:set-)?cookie)(?P<sep>[ \t]*[:=][ \t]*)(?![\s<])[^\r\n\"]+"),
         r"\g<h>\g<sep><redacted>"),
        (("bearer", "basic", "token", "negotiate"),
         re.compile(r"(?i)\b(?P<scheme>bearer|basic|token|negotiate)(?P<sp>\s+)(?P<cred>[A-Za-z0-9._~+/=-]{8,})"),
         _scheme),
        (("sshpass",), re.compile(rf"(?P<pre>\bsshpass\b{_SHELL_END}\s-p\s*)(?P<v>{_QUOTED}|[^\s'\"]+)"), _flag),
        (("mysql", "mariadb"),
         re.compile(rf"(?P<pre>\b(?:mysql|mariadb)[\w-]*{_SHELL_END}\s-p)(?P<v>{_QUOTED}|[^\s'\"]+)"), _flag),
        (("redis-cli",), re.compile(rf"(?P<pre>\bredis-cli\b{_SHELL_END}\s-a\s+)(?P<v>{_QUOTED}|[^\s'\"]+)"), _flag),
        (("curl", "wget"),
         re.compile(rf"(?P<pre>\b(?:curl|wget)\b{_SHELL_END}\s(?:-u|--user)[\s=]+['\"]?[^\s:'\"]*:)(?P<v>[^\s'\"]+)"),
         _flag),
        # `-p'x'`: a glued quoted value is a password
        (("-p'", '-p"'), re.compile(rf"(?P<pre>(?<![\w-])-p)(?P<v>{_QUOTED})"), _flag),
        (("pass", "secret", "token", "key"),
         re.compile(r"(?i)(?P<pre>(?<![\w-])--?[\w-]*?(?:password|passwd|passphrase|secret|token|api-?key|access-?key"
                    rf"|private-?key)[ \t]+)(?P<v>{_QUOTED}|(?![-<])[^\s'\"]+)"), _flag),
        (_KEY_HINTS,
         re.compile(rf"(?i)(?P<key>{keys})(?P<sep>\\?[\"'`]?\]?[ \t]*(?::=|=>|[:=])[ \t]*)"
                    r"(?:(?P<q>\\?[\"'])(?P<quoted>(?:(?!(?P=q)).)*)(?P=q)"
                    r"|(?!<|[{\[]|(?:bearer|basic|token|negotiate)\s)[^\s\"',;&)}\]]+)"), _key_value),
        ((), re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9_]{20,}|github_pat_[A-Za-z0-9_]{20,}"
                        r"|gl(?:pat|dt|ft|rt|soat|cbt|imt|ptt|agent|oas)-[\w-]{20,}|glsa_\w{32,}"
                        r"|xox[abposre]-[\w-]{10,}|xapp-[\w-]{10,}"
                        r"|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[0-9A-Za-z]{20,}"
                        r"|sk-(?:ant-|proj-|svcacct-|admin-)?[\w-]{16,}"
                        r"|(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[0-9A-Z]{16}"
                        r"|AIza[\w-]{35}|ya29\.[\w-]{20,}|GOCSPX-[\w-]{20,}"
                        r"|npm_[A-Za-z0-9]{36}|pypi-[\w-]{50,}|SG\.[\w-]{16,}\.[\w-]{16,}"
                        r"|(?:AC|SK)[0-9a-fA-F]{32}|hf_[A-Za-z0-9]{30,}|dop_v1_[0-9a-f]{64}"
                        r"|shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}|hv[sbr]\.[\w-]{24,}|ATATT3[\w=-]{50,}|dapi[0-9a-f]{32}"
                        r"|[MNO][\w-]{23,28}\.[\w-]{6,7}\.[\w-]{27,40}"
                        r"|eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*)(?![\w-])"), "<token>"),
        (("@",), re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), "<email>"),
        ((":",), re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
                            r"(?:%[\w.]+)?(?![\w:]|\.\d)"), _ipv6),
        ((".",), re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                            r"(?![\w.]*\d)"), "<ip>"),
    ]


# --------------------------------------------------------------------------- random-looking strings

_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{20,}")
_SEPARATORS = re.compile(r"[_\-+=./~]+")
# A piece of an identifier a person wrote: words (lower, Capitalised, CAPS, camelCase) with a
# number after, a number with a unit, a short hex id, or anything of three characters.
_PLAIN = re.compile(r"(?:[A-Z]?[a-z]{2,}|[A-Z]{2,}(?![a-z]))+\d*[a-z]{0,2}|[a-z]{1,2}\d+[a-z]{0,2}|\d+[A-Za-z]{0,3}"
                    r"|0x[0-9a-fA-F]+|[0-9a-fA-F]{1,16}|\w{1,3}")
_UUID = re.compile(r"(?:[A-Za-z]+[-_])?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# what names a hex string a digest or an id, just before it: `commit 3f1c…`, `sha256:…`, `"revision": "…`
_LABEL = re.compile(r"(?i)(?:commit|sha\d*|rev(?:ision)?|digest|hash|checksum|md5|etag|fingerprint|uuid|(?<![a-z])id"
                    r"|trace|span|request|req|parent|object|build|run|job|txn?|block)[\w-]*?[\W_]{0,4}$")
MIN_RANDOM = 20  # characters: shorter runs are ids and words; credentials are longer
MIN_HEX = 32  # hex digits: fewer are commit abbreviations, request and object ids
# Share of neighbouring characters that change class (lower, upper, digit), a capital that
# starts a word counted as lower: random base36 has 0.4 (1% of 32-character runs below 0.16),
# base62 0.45, hex 0.47; words with a number in them 0.1 (`orders20260330parquet`: 0.08).
CHANGES = 0.15


def _changes(s: str) -> float:
    kinds = ["d" if c.isdigit() else "l" if c.islower() or c.isupper() and s[i + 1:i + 2].islower()
             else "u" if c.isupper() else "o" for i, c in enumerate(s)]
    return sum(a != b for a, b in zip(kinds, kinds[1:], strict=False)) / max(1, len(s) - 1)


def _plain(s: str) -> bool:
    """Made of pieces a person would write: `clickstream_part_2026_03_30_FINAL_v2`, `sweep3d-5x5x400-10mk`."""
    pieces = [p for p in _SEPARATORS.split(s) if p]
    return all(_PLAIN.fullmatch(p) or len(p) <= 8 and len(pieces) >= 3 for p in pieces)


def _looks_random(s: str) -> bool:
    """True for a run of base64 characters that reads like random bytes rather than words, ids or numbers."""
    b64_entropy, hex_entropy, hex_limit = _entropy()
    core = s.strip("=")
    if all(c in _HEX for c in core):
        return len(core) >= MIN_HEX and not core.isdigit() and hex_entropy(core) > hex_limit
    if _plain(core) or _UUID.fullmatch(core):
        return False
    joined = "".join(p for p in _SEPARATORS.split(core) if p)
    if len(joined) < MIN_RANDOM or not any(c.isdigit() for c in joined) or not any(c.isalpha() for c in joined):
        return False
    # The entropy of n characters is at most log2(n), so detect-secrets' 4.5 bits (made for quoted
    # strings in code) can never be reached by a 20-character token; 0.75 * log2(n) keeps random
    # base36 (its 0.5th percentile: 3.3 bits at 20 characters, 3.9 at 32) and drops most names.
    return _changes(joined) >= CHANGES and b64_entropy(joined) >= min(4.0, 0.75 * math.log2(len(joined)))


def _random_run(m: re.Match[str]) -> str:
    s = m[0]
    if all(c in _HEX for c in s) and _LABEL.search(m.string, max(0, m.start() - 24), m.start()):
        return s
    parts = s.split("/")
    named = [p for p in parts if p]
    if len(parts) >= 3 and 2 * sum(_plain(p) for p in named) >= len(named):
        # a path: judge each directory on its own, so /var/lib/docker/<64 hex>/merged keeps its words
        return "/".join("<secret>" if _looks_random(p) else p for p in parts)
    return "<secret>" if _looks_random(s) else s


# --------------------------------------------------------------------------- redaction


def _replace_found(text: str, value: str, placeholder: str) -> str:
    """Every occurrence of `value` replaced, widened to the whole token (a plugin may match a prefix)."""
    out: list[str] = []
    pos = 0
    while (i := text.find(value, pos)) >= 0:
        start, end = i, i + len(value)
        while start > pos and text[start - 1] in _TOKEN_CHARS:
            start -= 1
        while end < len(text) and text[end] in _TOKEN_CHARS:
            end += 1
        out += [text[pos:start], placeholder]
        pos = end
    return "".join(out) + text[pos:]


# What must be in a text for each plugin to find anything in it (a plugin not named here always
# runs): their regexes scan every position of every line, which cost half the masking time on
# real logs, and a line seldom holds the prefix. tests/test_redact.py checks that no hint hides a
# finding of its plugin on the corpus.
_NEEDS = {name: re.compile(hint) for name, hint in {
    "ArtifactoryDetector": r"AKC|AP[\dA-F]",
    "AWSKeyDetector": r"(?i)aws|A3T|ABIA|ACCA|AKIA|ASIA",
    "AzureStorageKeyDetector": r"AccountKey=",
    "BasicAuthDetector": r"://",
    "CloudantDetector": r"(?i)cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pw|pass|token)|cloudant\.com",
    "DiscordBotTokenDetector": r"[MNO][\w-]{23}",
    "GitHubTokenDetector": r"gh[pousr]_",
    "GitLabTokenDetector": r"gl[a-z]{2,5}-|GR1348941",
    "IbmCloudIamDetector": r"[\w-]{44}",
    "IbmCosHmacDetector": r"(?i)secret",
    "JwtTokenDetector": r"eyJ",
    "MailchimpDetector": r"-us\d",
    "NpmDetector": r"_authToken",
    "OpenAIDetector": r"T3BlbkFJ",
    "PrivateKeyDetector": r"BEGIN|PuTTY",
    "PypiTokenDetector": r"pypi-",
    "SendGridDetector": r"SG\.",
    "SlackDetector": r"(?i)xox|hooks\.slack",
    "SoftlayerDetector": r"(?i)(?:softlayer|sl)[_-]?(?:api)?[_-]?(?:key|pwd|pass|token)|softlayer\.com",
    "SquareOAuthDetector": r"sq0csp-",
    "StripeDetector": r"k_live_",
    "TelegramBotTokenDetector": r"\d{8}:",
    "TwilioKeyDetector": r"AC|SK",
}.items()}


def _detected(text: str) -> str:
    """What detect-secrets' plugins still find after the project's rules, masked."""
    for detector in _detectors():
        needs = _NEEDS.get(type(detector).__name__)
        if needs is not None and not needs.search(text):
            continue
        found = {v.strip(" \t=:\"'") for v in detector.analyze_string(text)}
        for value in sorted(found, key=len, reverse=True):
            if len(value) < 8 or "<" in value:
                continue  # a placeholder the rules above left, or too short to replace safely
            if detector.secret_type == "Private Key":  # a block the rules did not recognise: mask to the end
                start = text.find(value)
                if start >= 0:
                    text = text[:text.rfind("\n", 0, start) + 1] + "<private-key>"
                continue
            text = _replace_found(text, value, "<password>" if detector.secret_type == "Basic Auth Credentials"
                                  else "<token>")
    return text


# No secret shape fits in 10 word characters without `.`, `:`, `=`, `@` or a space (the shortest,
# an Artifactory password, has 11): enum values such as `file_share` or `etl-7` skip every rule.
_TRIVIAL = re.compile(r"[\w-]{0,10}")


def _redact(text: str, ids: bool) -> str:
    if _TRIVIAL.fullmatch(text):
        return text
    lower = text.lower()
    for hints, pattern, repl in _rules():
        if not hints or any(h in lower for h in hints):
            text = pattern.sub(repl, text)
    text = _detected(text)
    if not ids:
        text = _RUN.sub(_random_run, text)
    return text


_cached = functools.lru_cache(maxsize=1 << 15)(_redact)


def redact_text(text: str) -> str:
    """`text` with private keys, passwords, tokens, secret values, random strings, e-mail and IP addresses masked."""
    return _cached(text, False) if len(text) <= _CACHE_CHARS else _redact(text, False)


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> str:
    """`secret` for a key whose value is a credential, `id` for one that names a thing, else ``."""
    if re.fullmatch(rf"[\w.-]*?(?:{_key_names()})", key, re.I):
        return "secret"
    if re.fullmatch(rf"[\w.-]*?(?:{_key_names()})s", key, re.I):
        return "secrets"  # `passwords`, `tokens`: a secret only when it holds a list or an object
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()
    return "id" if re.search(r"(?:^|[_.-])(?:id|ids|ref|uid|uuid|revision|rev|sha|commit|digest|hash|checksum|etag"
                             r"|fingerprint|trace|span)$", words) else ""


def _mask_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_leaves(v) for v in value]
    if isinstance(value, bool) or value is None or value == "":
        return value
    return "<redacted>" if isinstance(value, str | int | float) else value


def redact_value(value: Any, key: str = "") -> Any:
    """A JSON-like value with every string (object keys too) through `redact_text`, everything under a secret key masked.

    Under a key such as `password`, `api_key`, `Authorization` or `session_id` every scalar
    becomes `<redacted>` (booleans and nulls stay); under an id key (`id`, `trace_id`,
    `revision`) random-looking strings stay, so records keep the ids a replay refers to."""
    kind = _key_kind(key) if key else ""
    if kind == "secret" or kind == "secrets" and isinstance(value, dict | list):
        return _mask_leaves(value)
    if isinstance(value, str):
        if kind == "id":
            return _cached(value, True) if len(value) <= _CACHE_CHARS else _redact(value, True)
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text(k) if isinstance(k, str) else k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, key) for v in value]
    return value
