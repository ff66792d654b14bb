"""A short schemathesis run against the live gateway's /openapi.json: no 5xx, documented statuses and bodies.

The long run is bench/fuzz_api.py. `negative_data_rejection` is on: it found two inputs the
shared input check accepted although the Input JSON Schema refuses them (`"agents": null`, a
conflict's `action` without `type`); both are refused now.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_gateway import Served

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "ignored_auth,unsupported_method,missing_required_header,negative_data_rejection")


def test_schemathesis_finds_no_server_error(policy_repo: Path, tmp_path: Path,
                                           serve: Callable[..., Served]) -> None:  # noqa: F811
    pytest.importorskip("schemathesis")
    token = "fuzz-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)
    gw = serve(policy_repo, "--token-file", str(tmp_path / "token"), "--log-dir", str(tmp_path / "log"),
               "--workers", "1", token=token)
    exe = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run([str(exe), "run", f"{gw.url}/openapi.json", "--checks", CHECKS, "--max-time", "15",
                           "-H", f"Authorization: Bearer {token}", "--seed", "7", "--request-timeout", "10"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Traceback" not in gw.stderr
    assert gw.stop() == 0
