"""OPA bundles: a commit's policy set as a reproducible tar.gz, signed and verified the way OPA does it.

OPA reads a bundle's files by their tarball paths, hashes `.rego` files as raw bytes and
JSON files (`data.json`, `.manifest`) as canonical JSON, and checks one JWT in
`.signatures.json` that lists every other file with its digest (OPA's v1/bundle/sign.go,
hash.go and verify.go). Overrides are policyctl's own: they never enter a bundle, and
`opa_cannot_run` says which ones an OPA server serving it goes without.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from policyctl.engine import compile_policy_set, with_meta
from policyctl.errors import InputError, PolicyctlError, Problem
from policyctl.model.records import OverrideHeader, parse_override_header
from policyctl.repo import Snapshot

ROOT = "agentgov"
MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
SIGNING_ALGORITHMS = ("RS256", "ES256", "HS256")
DEFAULT_KEY_ID = "policyctl"
MIN_HMAC_BYTES = 32   # RFC 7518 3.2: an HS256 key is at least as long as the hash
MIN_RSA_BITS = 2048

# The files OPA hashes as canonical JSON (IsStructuredDoc); every other file as its bytes.
_STRUCTURED = frozenset({"data.json", "data.yaml", "signatures.json", ".manifest"})
# OPA's HashingAlgorithm names and their hashlib names.
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512", "SHA-512-224": "sha512_224", "SHA-512-256": "sha512_256"}


# --------------------------------------------------------------------------- the bundle's files


def bundle_files(snapshot: Snapshot) -> dict[str, bytes]:
    """Path -> bytes of every file in the bundle. Data sits where OPA maps it to data.agentgov.…"""
    policy_set = compile_policy_set(snapshot)  # raises when it does not compile
    files: dict[str, bytes] = {}
    # rego_version 1: the policies are Rego v1, which an OPA 0.x server would not assume by itself.
    files[MANIFEST] = json.dumps({"revision": snapshot.revision or "worktree", "roots": [ROOT], "rego_version": 1,
                                  "metadata": {"generator": "policyctl"}}, indent=2).encode()
    for module in policy_set.modules:
        files[module.file] = module.text.encode("utf-8")
    data = with_meta(policy_set.data, policy_set.modules)[ROOT]
    for key, value in sorted(data.items()):
        # each top-level key of data.agentgov gets its own data.json at agentgov/<key>/
        files[f"{ROOT}/{key}/data.json"] = json.dumps(value, indent=2, sort_keys=True).encode()
    return files


@dataclass(frozen=True)
class Bundle:
    """A built bundle: the tar.gz bytes, the revision it holds, its file names, and how it is signed."""

    revision: str
    data: bytes
    files: list[str]
    signed_by: SigningKey | None = None

    def describe(self) -> dict[str, Any]:
        signature = None if self.signed_by is None else self.signed_by.describe()
        return {"revision": self.revision, "files": self.files, "bytes": len(self.data), "signature": signature}


def build_bundle(snapshot: Snapshot, *, signing: SigningKey | None = None) -> Bundle:
    """The bundle of a snapshot in memory: the same commit and key give the same bytes (ES256 aside)."""
    files = bundle_files(snapshot)
    if signing is not None:
        files[SIGNATURES] = json.dumps({"signatures": [sign_files(files, signing)]}, indent=1).encode()
    return Bundle(revision=snapshot.revision or "worktree", data=_targz(files), files=sorted(files),
                  signed_by=signing)


def write_bundle(snapshot: Snapshot, output: Path, *, signing: SigningKey | None = None) -> Bundle:
    """Build the bundle and write it to `output` whole or not at all (a temporary file, then a rename)."""
    bundle = build_bundle(snapshot, signing=signing)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(bundle.data)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"{output}: cannot write the bundle ({exc.strerror or exc})") from exc
    return bundle


def _targz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0  # reproducible: same commit, same bytes
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


# --------------------------------------------------------------------------- what OPA cannot run


@dataclass(frozen=True)
class PolicyctlOnly:
    """An override active at a commit: OPA servers serving its bundle decide these inputs by the policies alone."""

    header: OverrideHeader

    def describe(self) -> dict[str, Any]:
        h = self.header
        return {"name": h.name, "file": h.file, "match": h.match, "priority": h.priority,
                "expires": h.expires.isoformat().replace("+00:00", "Z"), "why": h.doc.splitlines()[0].strip()}

    def line(self) -> str:
        d = self.describe()
        return f"{d['file']} ({d['name']}): matches {format_match(self.header.match)}; " \
               f"priority {d['priority']}, until {d['expires']}"


def opa_cannot_run(snapshot: Snapshot, now: datetime) -> list[PolicyctlOnly]:
    """The overrides of a snapshot that apply at `now`, by priority then name, as the gateway runs them.

    Headers are read with `ast` like the gateway does; a broken one raises ValidationError
    with its file:line, since no gateway serves that commit either. Expired overrides apply
    nowhere, so OPA misses nothing by not having them.
    """
    found: list[PolicyctlOnly] = []
    for path in snapshot.paths("overrides/", ".py"):
        if path.count("/") != 1:  # the gateway loads overrides/*.py only
            continue
        header = parse_override_header(snapshot.text(path), file=path)
        if not header.expired(now):
            found.append(PolicyctlOnly(header))
    return sorted(found, key=lambda o: (-o.header.priority, o.header.name))


def format_match(match: dict[str, Any]) -> str:
    """`kind=conflict, resource.port in [22, 2375]`: an override's selector as a reader says it."""
    if not match:
        return "every input"
    parts = []
    for path, want in match.items():
        parts.append(f"{path} in {json.dumps(want)}" if isinstance(want, list) else f"{path}={json.dumps(want)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- hashing as OPA does


class _Number(str):
    """A JSON number kept as written: OPA decodes with UseNumber and hashes a number by its source text."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_structured(data: bytes) -> Any:
    """A JSON file as OPA's util.Unmarshal reads it (BOM stripped, numbers kept as written)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return json.loads(data.decode("utf-8", errors="replace"), parse_int=_Number, parse_float=_Number,
                      parse_constant=_refuse_constant)


# Go's encoding/json with SetEscapeHTML(false): these are escaped, everything else is written as is;
# a lone surrogate cannot come out of Go's decoder, which makes it U+FFFD.
_GO_ESCAPE = re.compile("[\x00-\x1f\"\\\\\u2028\u2029\ud800-\udfff]")
_GO_NAMED = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
             "\u2028": "\\u2028", "\u2029": "\\u2029"}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _GO_NAMED:
        return _GO_NAMED[ch]
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"
    return f"\\u{ord(ch):04x}"


def _go_string(s: str) -> bytes:
    return ('"' + _GO_ESCAPE.sub(_go_escape, s) + '"').encode("utf-8")


def _walk(value: Any, h: Any) -> None:
    """OPA's hash.go walk: objects with keys in byte order, no whitespace, primitives as Go encodes them."""
    if isinstance(value, dict):
        h.update(b"{")
        # Keys as Go decoded them; then code point order is UTF-8 byte order, Go's sort.Strings.
        items = sorted(((_LONE_SURROGATE.sub("\ufffd", k), v) for k, v in value.items()), key=lambda kv: kv[0])
        for i, (key, item) in enumerate(items):
            if i:
                h.update(b",")
            h.update(_go_string(key))
            h.update(b":")
            _walk(item, h)
        h.update(b"}")
    elif isinstance(value, list):
        h.update(b"[")
        for i, item in enumerate(value):
            if i:
                h.update(b",")
            _walk(item, h)
        h.update(b"]")
    elif isinstance(value, _Number):
        h.update(value.encode("ascii"))
    elif isinstance(value, str):
        h.update(_go_string(value))
    elif value is True:
        h.update(b"true")
    elif value is False:
        h.update(b"false")
    elif value is None:
        h.update(b"null")
    elif isinstance(value, int | float):  # a Python value never read from a file
        h.update(json.dumps(value).encode())
    else:
        raise TypeError(f"not JSON data: {type(value).__name__}")


def is_structured(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in _STRUCTURED


def file_digest(name: str, data: bytes, algorithm: str = "SHA-256") -> str:
    """The hex digest OPA computes for a bundle file: canonical JSON for data/manifest files, raw bytes otherwise.

    Raises ValueError for an algorithm OPA does not know or a JSON file that does not parse.
    """
    if algorithm not in _HASHES:
        raise ValueError(f"unsupported hashing algorithm: {algorithm}")
    h = hashlib.new(_HASHES[algorithm])
    if is_structured(name):
        _walk(parse_structured(data), h)
    else:
        h.update(data)
    return h.hexdigest()


# --------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class SigningKey:
    """A private key (or HMAC secret) that signs bundles, and the key id and scope their JWT carries."""

    algorithm: str
    key: Any = field(repr=False)
    key_id: str = DEFAULT_KEY_ID
    scope: str = ""
    file: str = ""

    def describe(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "key_id": self.key_id, "scope": self.scope}


def load_signing_key(path: Path, algorithm: str | None = None, *, key_id: str = DEFAULT_KEY_ID,
                     scope: str = "") -> SigningKey:
    """Read a signing key: a PEM private key (RSA for RS256, P-256 for ES256) or an HMAC secret for HS256.

    Without `algorithm` it follows the key: RSA -> RS256, EC -> ES256, anything not PEM -> HS256.
    An HMAC secret is the file's text without surrounding whitespace: configure the same
    string as OPA's `keys.<id>.key`.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if algorithm is not None and algorithm not in SIGNING_ALGORITHMS:
        raise InputError(f"--signing-alg {algorithm}: use one of {', '.join(SIGNING_ALGORITHMS)}")
    if not key_id:
        raise InputError("--key-id must not be empty: OPA finds the verification key by it")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the signing key ({exc.strerror or exc})") from exc
    is_pem = b"-----BEGIN" in raw
    algorithm = algorithm or ("HS256" if not is_pem else "ES256" if b"EC PRIVATE" in raw else None)
    if algorithm == "HS256":
        if is_pem:
            raise InputError(f"{path}: a PEM key cannot be an HS256 secret; pass --signing-alg RS256 or ES256")
        secret = raw.strip()
        if len(secret) < MIN_HMAC_BYTES:
            raise InputError(f"{path}: an HS256 secret needs at least {MIN_HMAC_BYTES} bytes, this one has "
                             f"{len(secret)} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return SigningKey("HS256", secret, key_id, scope, str(path))
    try:
        key = load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if algorithm is None:
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    if algorithm == "RS256" and not (isinstance(key, rsa.RSAPrivateKey) and key.key_size >= MIN_RSA_BITS):
        raise InputError(f"{path}: RS256 needs an RSA private key of at least {MIN_RSA_BITS} bits")
    if algorithm == "ES256" and not (isinstance(key, ec.EllipticCurvePrivateKey)
                                     and isinstance(key.curve, ec.SECP256R1)):
        raise InputError(f"{path}: ES256 needs an EC private key on curve P-256 (prime256v1)")
    return SigningKey(algorithm, key, key_id, scope, str(path))


def sign_files(files: dict[str, bytes], signing: SigningKey) -> str:
    """The JWT OPA expects in .signatures.json: every file with its SHA-256, plus keyid and scope claims."""
    import jwt

    listed = [{"name": name, "hash": file_digest(name, data), "algorithm": "SHA-256"}
              for name, data in sorted(files.items()) if name != SIGNATURES]
    claims: dict[str, Any] = {"files": listed, "keyid": signing.key_id}
    if signing.scope:
        claims["scope"] = signing.scope
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    return jwt.PyJWS().encode(payload, signing.key, algorithm=signing.algorithm, headers={"kid": signing.key_id})


# --------------------------------------------------------------------------- verifying


class BundleVerificationError(PolicyctlError):
    """A bundle OPA would refuse: its signature or a file's digest does not check; `problems` says which."""

    code = "bundle_verification_failed"

    def __init__(self, bundle: str, problems: list[Problem]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{bundle}: {problems[0]}{more}")


@dataclass(frozen=True)
class VerifiedBundle:
    """What a verified bundle's signature says: the key id and scope it was signed for, and the files."""

    revision: str | None
    key_id: str
    scope: str
    files: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {"revision": self.revision, "key_id": self.key_id, "scope": self.scope, "files": self.files}


def verify_bundle(path: Path | bytes, key: bytes | str, *, algorithm: str | None = None, scope: str = "",
                  key_id: str | None = None) -> VerifiedBundle:
    """Check a bundle as OPA's verifier does, or raise BundleVerificationError naming every bad file.

    `key` is the PEM public key (a private key or certificate works too) or the HMAC secret,
    as in OPA's `keys.<id>.key`; `algorithm` follows the key unless given; `scope` and
    `key_id` are the `bundles.<name>.signing` settings. The JWT must verify, its scope must
    equal `scope`, every file but .signatures.json must be listed with a matching digest,
    and every listed file must be in the bundle.
    """
    label = str(path) if isinstance(path, Path) else "<bundle>"
    members = read_members(path, label)
    signature_docs = [name for name in members if name.endswith("signatures.json")]
    if not signature_docs:
        raise BundleVerificationError(label, [Problem(SIGNATURES, "the bundle is not signed (no .signatures.json)",
                                                      code="bundle_unsigned")])
    if len(signature_docs) > 1:
        raise BundleVerificationError(label, [Problem(name, "more than one signatures file", code="bad_signatures")
                                              for name in signature_docs])
    where = signature_docs[0]
    token = _single_token(members[where], where, label)
    claims = _verify_token(token, key, algorithm=algorithm, scope=scope, key_id=key_id, where=where, label=label)
    listed = claims["files"]
    problems: list[Problem] = []
    for name, data in members.items():
        if name == where:
            continue
        name = name.removeprefix("/")
        info = listed.pop(name, None)
        if info is None:
            problems.append(Problem(name, "not included in the bundle signature", code="file_not_signed"))
            continue
        try:
            digest = file_digest(name, data, info["algorithm"])
        except ValueError as exc:
            problems.append(Problem(name, str(exc), code="bad_file"))
            continue
        if digest != info["hash"].lower():
            problems.append(Problem(name, f"digest mismatch (want {info['hash']}, got {digest})",
                                    code="digest_mismatch"))
    for name in sorted(listed):
        problems.append(Problem(name, "listed in the bundle signature but not in the bundle", code="file_missing"))
    if problems:
        raise BundleVerificationError(label, problems)
    revision = None
    if MANIFEST in members:
        manifest = parse_structured(members[MANIFEST])
        revision = manifest.get("revision") if isinstance(manifest, dict) else None
    return VerifiedBundle(revision=revision, key_id=claims["key_id"], scope=claims.get("scope") or "",
                          files={f["name"]: f["hash"] for f in claims["listed"]})


def read_members(path: Path | bytes, label: str) -> dict[str, bytes]:
    """The regular files of a tar.gz by their names in the archive (OPA reads only regular files)."""
    try:
        raw = path.read_bytes() if isinstance(path, Path) else path
        members: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                extracted = tar.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if member.name in members:
                    raise BundleVerificationError(label, [Problem(member.name, "appears twice in the archive",
                                                                  code="duplicate_file")])
                members[member.name] = data
        return members
    except OSError as exc:
        raise InputError(f"{label}: cannot read the bundle ({exc.strerror or exc})") from exc
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, ValueError) as exc:
        raise InputError(f"{label}: not a tar.gz bundle ({exc})") from exc


def _single_token(doc: bytes, where: str, label: str) -> str:
    try:
        value = json.loads(doc)
    except ValueError as exc:
        raise BundleVerificationError(label, [Problem(where, f"not JSON ({exc})", code="bad_signatures")]) from None
    tokens = value.get("signatures") if isinstance(value, dict) else None
    if not isinstance(tokens, list) or not tokens:
        raise BundleVerificationError(label, [Problem(where, "missing JWT (expected exactly one)",
                                                      code="bad_signatures")])
    if len(tokens) > 1:
        raise BundleVerificationError(label, [Problem(where, "multiple JWTs not supported (expected exactly one)",
                                                      code="bad_signatures")])
    if not isinstance(tokens[0], str):
        raise BundleVerificationError(label, [Problem(where, "the JWT is not a string", code="bad_signatures")])
    return tokens[0]


def _verify_token(token: str, key: bytes | str, *, algorithm: str | None, scope: str, key_id: str | None,
                  where: str, label: str) -> dict[str, Any]:
    """The JWT's checked claims: `files` by name, `listed` as signed, `key_id`, `scope`."""
    import jwt

    def fail(message: str, code: str = "bad_signature") -> BundleVerificationError:
        return BundleVerificationError(label, [Problem(where, message, code=code)])

    public, algorithm = _verification_key(key, algorithm)
    try:
        decoded = jwt.PyJWS().decode_complete(token, public, algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise fail(f"the JWT does not verify with the {algorithm} key ({exc})") from None
    try:
        claims = json.loads(decoded["payload"])
    except ValueError as exc:
        raise fail(f"the JWT payload is not JSON ({exc})") from None
    files = claims.get("files") if isinstance(claims, dict) else None
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and all(isinstance(f.get(k), str) for k in ("name", "hash", "algorithm"))
            for f in files):
        raise fail("the JWT payload's `files` must be a list of {name, hash, algorithm} strings")
    header_kid = decoded["header"].get("kid")
    # OPA's order: the configured key id, then the JWT header's kid, then the deprecated keyid claim.
    found_id = key_id or (header_kid if isinstance(header_kid, str) else "") or str(claims.get("keyid") or "")
    if not found_id:
        raise fail("verification key ID is empty: the JWT has no kid and no keyid (set signing.keyid in OPA)")
    if str(claims.get("scope") or "") != scope:
        raise fail(f"scope mismatch: the bundle is signed for scope {claims.get('scope') or ''!r}, "
                   f"the verifier expects {scope!r}", code="scope_mismatch")
    return {"files": {f["name"]: f for f in files}, "listed": files, "key_id": found_id,
            "scope": claims.get("scope") or ""}


def _verification_key(key: bytes | str, algorithm: str | None) -> tuple[Any, str]:
    """The key object PyJWT verifies with, and the algorithm: given, or the key's own (never the JWT's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    raw = key.encode() if isinstance(key, str) else key
    if b"-----BEGIN" not in raw:
        if algorithm not in (None, "HS256"):
            raise InputError(f"a {algorithm} verification key must be PEM (a public key, private key or certificate)")
        return raw, "HS256"
    public: Any = None
    for load in (load_pem_public_key, lambda b: load_pem_private_key(b, password=None).public_key(),
                 lambda b: x509.load_pem_x509_certificate(b).public_key()):
        try:
            public = load(raw)
            break
        except (ValueError, TypeError):
            continue
    if public is None:
        raise InputError("the verification key is not a PEM public key, private key or certificate")
    own = "RS256" if isinstance(public, rsa.RSAPublicKey) else "ES256" if isinstance(public, ec.EllipticCurvePublicKey) \
        else None
    if own is None or algorithm not in (None, own):
        raise InputError(f"the verification key does not fit {algorithm or 'RS256 or ES256'}")
    return public, own
