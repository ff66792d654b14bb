"""`policyctl decide`: what the gateway would answer for one input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO

import click

from policyctl.cli.common import emit_json, engine_flag, load_snapshot, repo_option


@click.command()
@repo_option
@click.option("--input", "input_file", required=True, type=click.File("rb"),
              help="A JSON input file, or - for standard input. A bare input, {\"input\": …} or an Event line.")
@click.option("--ref", default=None, help="Decide with the policies of this commit [default: HEAD].")
@click.option("--worktree", is_flag=True, help="Decide with the uncommitted files of the working tree.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole decision as JSON.")
@engine_flag
def decide(repo: Path, input_file: BinaryIO, ref: str | None, worktree: bool, as_json: bool) -> int:
    """Decide one input through the same pipeline as the gateway.

    Overrides first, then the policies, then the default (allow an action,
    negotiate a conflict). Exits 1 when the policy set could not evaluate the
    input (the decision is then a fail-closed deny with the error).
    """
    from policyctl.decide import build_revision, parse_input_document
    from policyctl.engine.guarded import require_no_crash

    name = getattr(input_file, "name", "-")
    name = "<stdin>" if name in ("-", "<stdin>") else str(name)
    data = input_file.read()
    input = parse_input_document(data, where=name)
    snap = load_snapshot(repo, ref, worktree)
    # regopy can kill the process on some modules: prove the compile and this input in a child first
    require_no_crash(snap, inputs=[input])
    revision = build_revision(snap, verify=False)
    decision = revision.pipeline.decide_dict(input)
    if as_json:
        emit_json(decision)
    else:
        _show(decision)
    return 1 if decision.get("source") == "error" else 0


def _show(decision: dict[str, Any]) -> None:
    import json

    out = sys.stdout
    rev = (decision.get("revision") or "worktree")[:12]
    out.write(f"{decision['action']}  (source: {decision['source']}, revision: {rev})\n")
    if decision.get("params"):
        out.write(f"  params: {json.dumps(decision['params'], sort_keys=True)}\n")
    for reason in decision.get("reasons", []):
        out.write(f"  because {reason.get('rule')} ({reason.get('file')}): {reason.get('message')}\n")
    if decision.get("error"):
        out.write(f"  error {decision['error']['code']}: {decision['error']['message']}\n")
    for s in decision.get("shadow", []):
        out.write(f"  shadow rule {s.get('rule')} would answer {s.get('action')}\n")
