"""Bundles OPA can pull: what OPA cannot run, signatures OPA checks, and the gateway serving them by ETag."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import commit_all, git, write
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_gateway import Served

from policyctl.cli.main import main
from policyctl.engine.bundle import BundleVerificationError, file_digest, verify_bundle

ACTIVE_OVERRIDE = '''"""Deny boom actions until the boom service is fixed (INC-7)."""
OVERRIDE = {"match": {"kind": "action", "action.type": ["boom", "bang"]},
            "expires": "2099-01-01T00:00:00Z", "priority": 50}

def decide(input):
    return {"action": "deny"}
'''

EXPIRED_OVERRIDE = '''"""An emergency long over."""
OVERRIDE = {"match": {"kind": "action", "action.type": "old"}, "expires": "2001-01-01T00:00:00Z"}

def decide(input):
    return {"action": "deny"}
'''


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def repack(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def keys(tmp_path: Path, alg: str) -> tuple[Path, bytes]:
    """A signing key file for `alg` and the verification key an OPA server is configured with."""
    signing = tmp_path / f"{alg}.key"
    if alg == "HS256":
        secret = b"a-shared-secret-of-at-least-32-bytes!!"
        signing.write_bytes(secret + b"\n")
        return signing, secret
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" \
        else ec.generate_private_key(ec.SECP256R1())
    signing.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return signing, private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------- what OPA cannot run


def test_build_names_the_overrides_opa_cannot_run_and_strict_refuses(policy_repo: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "overrides/boom.py", ACTIVE_OVERRIDE)
    write(policy_repo, "overrides/old.py", EXPIRED_OVERRIDE)
    head = commit_all(policy_repo, "an emergency override")
    out_path = tmp_path / "b.tar.gz"
    code, out, _ = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path))
    assert code == 0 and f"revision {head}" in out
    assert "OPA cannot run 1 override" in out
    assert 'overrides/boom.py (boom): matches kind="action", action.type in ["boom", "bang"]' in out
    assert "old.py" not in out  # expired: it decides nowhere, OPA misses nothing
    files = members(out_path.read_bytes())
    assert not any(name.startswith("overrides/") for name in files)
    manifest = json.loads(files[".manifest"])
    assert manifest["revision"] == head and manifest["roots"] == ["agentgov"] and manifest["rego_version"] == 1
    # OPA refuses a bundle with a package or data path outside its roots.
    packages = [line.split()[1] for name, data in files.items() if name.endswith(".rego")
                for line in data.decode().splitlines() if line.startswith("package ")]
    assert packages and all(p.split(".")[0] == "agentgov" for p in packages)
    assert all(name.startswith("agentgov/") for name in files if name.endswith("data.json"))

    code, out, _ = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(tmp_path / "j.tar.gz"),
                       "--json")
    doc = json.loads(out)
    assert code == 0 and doc["written"] is True and doc["revision"] == head
    assert doc["opa_cannot_run"] == [{"name": "boom", "file": "overrides/boom.py",
                                      "match": {"kind": "action", "action.type": ["boom", "bang"]},
                                      "priority": 50, "expires": "2099-01-01T00:00:00Z",
                                      "why": "Deny boom actions until the boom service is fixed (INC-7)."}]

    strict = tmp_path / "strict.tar.gz"
    code, out, err = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(strict), "--strict")
    assert code == 1 and "overrides/boom.py" in out and "--strict" in err and not strict.exists()


def test_strict_passes_when_every_override_has_expired(policy_repo: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write(policy_repo, "overrides/old.py", EXPIRED_OVERRIDE)
    commit_all(policy_repo, "an expired override")
    code, out, _ = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(tmp_path / "b.tar.gz"),
                       "--strict", "--json")
    assert code == 0 and json.loads(out)["opa_cannot_run"] == []


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS256"])
def test_a_signed_bundle_verifies_and_any_tampering_fails(alg: str, policy_repo: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    signing_key, verification_key = keys(tmp_path, alg)
    out_path = tmp_path / "signed.tar.gz"
    code, out, _ = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path),
                       "--signing-key", str(signing_key), "--key-id", "fleet", "--scope", "write", "--json")
    assert code == 0 and json.loads(out)["signature"] == {"algorithm": alg, "key_id": "fleet", "scope": "write"}
    files = members(out_path.read_bytes())
    assert json.loads(files[".signatures.json"]).keys() == {"signatures"}
    verified = verify_bundle(out_path, verification_key, scope="write")
    assert verified.key_id == "fleet" and verified.revision == git(policy_repo, "rev-parse", "HEAD")
    assert set(verified.files) == set(files) - {".signatures.json"}

    # OPA hashes JSON files canonically: re-indenting data.json changes no digest.
    relaid = dict(files, **{"agentgov/net/data.json": json.dumps(json.loads(files["agentgov/net/data.json"]))
                            .encode()})
    verify_bundle(repack(relaid), verification_key, scope="write")

    def refused(changed: dict[str, bytes], **kw: Any) -> list[tuple[str, str]]:
        with pytest.raises(BundleVerificationError) as info:
            verify_bundle(repack(changed), kw.pop("key", verification_key), scope=kw.pop("scope", "write"))
        return [(p.file, p.code) for p in info.value.problems]

    tampered = dict(files, **{"policies/main.rego": files["policies/main.rego"].replace(b'"deny": 0', b'"deny": 9')})
    assert refused(tampered) == [("policies/main.rego", "digest_mismatch")]
    data = json.loads(files["agentgov/net/data.json"])
    data["restricted_ports"] = []
    assert refused(dict(files, **{"agentgov/net/data.json": json.dumps(data).encode()})) == [
        ("agentgov/net/data.json", "digest_mismatch")]
    assert refused(dict(files, **{"policies/extra.rego": b"package agentgov.extra\n"})) == [
        ("policies/extra.rego", "file_not_signed")]
    assert refused({k: v for k, v in files.items() if k != "agentgov/meta/data.json"}) == [
        ("agentgov/meta/data.json", "file_missing")]
    assert refused(files, scope="read") == [(".signatures.json", "scope_mismatch")]
    (tmp_path / "other").mkdir()
    other_key = keys(tmp_path / "other", alg)[1] if alg != "HS256" else b"another-secret-of-at-least-32-bytes!!"
    assert refused(files, key=other_key) == [(".signatures.json", "bad_signature")]


def test_bundle_verify_names_the_tampered_file(policy_repo: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    signing_key, public = keys(tmp_path, "RS256")
    (tmp_path / "public.pem").write_bytes(public)
    out_path = tmp_path / "signed.tar.gz"
    run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path), "--signing-key", str(signing_key))
    again = tmp_path / "again.tar.gz"
    run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(again), "--signing-key", str(signing_key))
    assert again.read_bytes() == out_path.read_bytes()  # RS256 signatures are deterministic: still reproducible
    code, out, _ = run(capsys, "bundle", "verify", str(out_path), "--key", str(tmp_path / "public.pem"))
    assert code == 0 and "verified" in out and "key id policyctl" in out
    files = members(out_path.read_bytes())
    files["policies/net/ports.rego"] += b"\n# tampered\n"
    out_path.write_bytes(repack(files))
    code, _, err = run(capsys, "bundle", "verify", str(out_path), "--key", str(tmp_path / "public.pem"))
    assert code == 1 and "policies/net/ports.rego: digest_mismatch" in err


def test_file_digests_are_opas_canonical_json_and_raw_rego() -> None:
    # Keys in byte order, no whitespace, numbers as written, no HTML escaping, Go's string escapes.
    doc = b'{"b": 1.50, "a": ["<&>", "\\u2028", "tab\\t", "\\u0001", "\\u00e9"], "c": {"y": null, "x": true}}'
    canonical = '{"a":["<&>","\\u2028","tab\\t","\\u0001","\u00e9"],"b":1.50,"c":{"x":true,"y":null}}'.encode()
    assert file_digest("agentgov/x/data.json", doc) == hashlib.sha256(canonical).hexdigest()
    assert file_digest(".manifest", doc, "MD5") == hashlib.md5(canonical).hexdigest()
    assert file_digest("policies/x.rego", doc) == hashlib.sha256(doc).hexdigest()


def test_a_bad_signing_key_is_refused_before_anything_is_written(policy_repo: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short"
    short.write_text("tiny\n")
    out_path = tmp_path / "b.tar.gz"
    code, _, err = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path),
                       "--signing-key", str(short))
    assert code == 1 and "at least 32 bytes" in err and not out_path.exists()
    rsa_key, _ = keys(tmp_path, "RS256")
    code, _, err = run(capsys, "bundle", "build", "--repo", str(policy_repo), "-o", str(out_path),
                       "--signing-key", str(rsa_key), "--signing-alg", "ES256")
    assert code == 1 and "P-256" in err and not out_path.exists()


# --------------------------------------------------------------------------- the gateway serves it


def test_the_gateway_serves_the_active_revision_as_a_bundle_by_etag(policy_repo: Path, tmp_path: Path,
                                                                    serve: Callable[..., Served],  # noqa: F811
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    token = "bundle-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)
    signing_key, public = keys(tmp_path, "RS256")
    gw = serve(policy_repo, "--workers", "1", "--token-file", str(tmp_path / "token"),
               "--bundle-signing-key", str(signing_key), "--bundle-key-id", "fleet", token=token)
    first = git(policy_repo, "rev-parse", "HEAD")
    gw.serving(first)
    path = "/v1/bundles/agentgov.tar.gz"
    # The gateway's token rules apply: OPA sends it as services[].credentials.bearer.token.
    assert gw.http.get(path, headers={"Authorization": ""}).status_code == 401

    response = gw.http.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["etag"] == f'"{first}"'
    built = tmp_path / "first.tar.gz"
    assert run(capsys, "bundle", "build", "--repo", str(policy_repo), "--ref", first, "-o", str(built),
               "--signing-key", str(signing_key), "--key-id", "fleet")[0] == 0
    assert response.content == built.read_bytes()
    assert verify_bundle(response.content, public).revision == first

    unchanged = gw.http.get(path, headers={"If-None-Match": f'"{first}"'})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == f'"{first}"'

    second = commit_all(policy_repo, "a new revision")
    gw.serving(second)
    changed = gw.http.get(path, headers={"If-None-Match": f'"{first}"'})
    assert changed.status_code == 200 and changed.headers["etag"] == f'"{second}"'
    built = tmp_path / "second.tar.gz"
    run(capsys, "bundle", "build", "--repo", str(policy_repo), "--ref", second, "-o", str(built),
        "--signing-key", str(signing_key), "--key-id", "fleet")
    assert changed.content == built.read_bytes()
    assert json.loads(members(changed.content)[".manifest"])["revision"] == second
    assert gw.http.get(path, headers={"If-None-Match": f'"{second}"'}).status_code == 304
    assert gw.stop() == 0
