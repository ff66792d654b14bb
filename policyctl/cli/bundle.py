"""`policyctl bundle build` and `bundle verify`: OPA bundles of a commit's policy set, signed as OPA checks them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from policyctl.cli.common import emit_json, engine_flag, repo_option
from policyctl.errors import PolicyctlError


@click.group()
def bundle() -> None:
    """OPA bundles, for fleets of OPA servers serving the same policy set."""


@bundle.command("build")
@repo_option
@click.option("--ref", default="HEAD", show_default=True, help="The commit to bundle.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle (.tar.gz).")
@click.option("--signing-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Sign the bundle: a PEM private key (RS256, ES256) or a file holding an HMAC secret (HS256).")
@click.option("--signing-alg", type=click.Choice(["RS256", "ES256", "HS256"]), default=None,
              help="The JWT algorithm [the key's: RSA RS256, EC ES256, a secret HS256].")
@click.option("--key-id", default="policyctl", show_default=True,
              help="The key id in the JWT: the name of the key in OPA's `keys` configuration.")
@click.option("--scope", default="", help="The scope claim; OPA refuses the bundle unless its signing.scope is equal.")
@click.option("--strict", is_flag=True, help="Exit 1, writing nothing, when OPA cannot run an override of this commit.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON.")
@engine_flag
def build(repo: Path, ref: str, output: Path, signing_key: Path | None, signing_alg: str | None, key_id: str,
          scope: str, strict: bool, as_json: bool) -> int:
    """Write an OPA bundle: .manifest (revision = commit id, roots [agentgov]), the .rego files, data.json.

    The policy set is compiled first: a commit that does not compile gets no bundle.
    Overrides are not in it: OPA cannot run them, so every override active at the
    commit is listed, and an OPA server decides those inputs by the policies alone.
    """
    from policyctl.engine.bundle import load_signing_key, opa_cannot_run, write_bundle
    from policyctl.repo import snapshot

    signing = load_signing_key(signing_key, signing_alg, key_id=key_id, scope=scope) if signing_key else None
    snap = snapshot(repo, ref)
    missing = opa_cannot_run(snap, datetime.now(UTC))
    refused = strict and bool(missing)
    doc: dict[str, Any] = {"output": str(output), "written": not refused, "revision": snap.revision,
                           "opa_cannot_run": [o.describe() for o in missing]}
    if not refused:
        doc.update(write_bundle(snap, output, signing=signing).describe())
    if as_json:
        emit_json(doc)
    else:
        if not refused:
            signed = "" if signing is None else f", signed {signing.algorithm} key id {signing.key_id}"
            click.echo(f"wrote {output} (revision {snap.revision}, {len(doc['files'])} files{signed})")
        if missing:
            n = len(missing)
            click.echo(f"OPA cannot run {n} override{'s' if n != 1 else ''} of this commit; OPA servers serving "
                       "this bundle decide these inputs by the policies alone:")
            for override in missing:
                click.echo(f"  {override.line()}")
    if refused:
        raise PolicyctlError(f"--strict: OPA cannot run {len(missing)} override(s) of {snap.revision}; "
                             f"{output} was not written", code="opa_cannot_run")
    return 0


@bundle.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The PEM public key, or the file holding the HMAC secret.")
@click.option("--alg", type=click.Choice(["RS256", "ES256", "HS256"]), default=None,
              help="The algorithm OPA's keys.<id>.algorithm names [the key's].")
@click.option("--scope", default="", help="The scope OPA's signing.scope expects.")
@click.option("--key-id", default=None, help="OPA's signing.keyid [the JWT's kid].")
@click.option("--json", "as_json", is_flag=True, help="Print the signed files as JSON.")
def verify(path: Path, key_file: Path, alg: str | None, scope: str, key_id: str | None, as_json: bool) -> int:
    """Check a signed bundle as an OPA server would before activating it; exit 1 naming each bad file."""
    from policyctl.engine.bundle import BundleVerificationError, verify_bundle

    raw = key_file.read_bytes()
    key = raw if b"-----BEGIN" in raw else raw.strip()  # a secret file's newline is not part of the secret
    try:
        verified = verify_bundle(path, key, algorithm=alg, scope=scope, key_id=key_id)
    except BundleVerificationError as exc:
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        raise
    if as_json:
        emit_json(verified.describe())
    else:
        click.echo(f"{path}: verified (revision {verified.revision}, key id {verified.key_id}, "
                   f"{len(verified.files)} files)")
    return 0
