"""OPA bundle writer: the policy set of a commit as a reproducible tar.gz."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from policyctl.engine import compile_policy_set, with_meta
from policyctl.repo import Snapshot


def bundle_files(snapshot: Snapshot) -> dict[str, bytes]:
    """Path -> bytes of every file in the bundle. Data sits where OPA maps it to data.agentgov.…"""
    policy_set = compile_policy_set(snapshot)  # raises when it does not compile
    files: dict[str, bytes] = {}
    files[".manifest"] = json.dumps({"revision": snapshot.revision or "worktree", "roots": ["agentgov"],
                                     "metadata": {"generator": "policyctl"}}, indent=2).encode()
    for module in policy_set.modules:
        files[module.file] = module.text.encode("utf-8")
    data = with_meta(policy_set.data, policy_set.modules)["agentgov"]
    for key, value in sorted(data.items()):
        # each top-level key of data.agentgov gets its own data.json at agentgov/<key>/
        files[f"agentgov/{key}/data.json"] = json.dumps(value, indent=2, sort_keys=True).encode()
    return files


def write_bundle(snapshot: Snapshot, output: Path) -> dict[str, Any]:
    files = bundle_files(snapshot)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0  # reproducible: same commit, same bytes
            tar.addfile(info, io.BytesIO(files[name]))
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return {"revision": snapshot.revision, "files": len(files)}
