"""Fuzz the gateway's HTTP API with schemathesis against its own /openapi.json: no 5xx, ever.

    python bench/fuzz_api.py [--max-time 120] [--checks all]

A real gateway (with a bearer token, so the auth paths are fuzzed too) on loopback;
schemathesis generates schema-valid and schema-violating requests for every operation
(examples, coverage, fuzzing and stateful phases: decide then outcome) and runs its
checks. The target is `not_a_server_error` with no failure; every other check's findings
are listed in the result as they are.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, write_result  # noqa: E402
from gateway import seed_repo, start_gateway  # noqa: E402

TOKEN = "fuzz-token-0123456789abcdef"


def schemathesis_command() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        raise SystemExit("schemathesis is not installed: pip install -c constraints.txt -e '.[dev]'")
    return [found]


def fuzz(url: str, *, max_time: float, checks: str, workdir: Path) -> dict[str, Any]:
    """Run schemathesis once; the counts and failures it printed, and its exit status."""
    done = subprocess.run([*schemathesis_command(), "run", f"{url}/openapi.json", "--checks", checks,
                           "--max-time", str(int(max_time)), "-H", f"Authorization: Bearer {TOKEN}",
                           "--request-timeout", "10", "--seed", "1"],
                          capture_output=True, text=True, cwd=workdir)
    out = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", out)
    failures = sorted(set(re.findall(r"- (ST\d+|[A-Z][\w -]+?)\n", out)))
    server_errors = len(re.findall(r"\[5\d\d\]", out))
    return {"exit_status": done.returncode, "generated": int(generated.group(1)) if generated else None,
            "failures": failures, "server_error_responses": server_errors,
            "failure_section": out[out.find("FAILURES"):][:6000] if "FAILURES" in out else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", type=float, default=120)
    parser.add_argument("--checks", default="all")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="policyctl-bench-fuzz-") as tmp:
        root = Path(tmp)
        repo = seed_repo(root)
        token_file = root / "token"
        token_file.write_text(TOKEN)
        gw = start_gateway(repo, "--token-file", str(token_file), "--log-dir", str(root / "log"), "--workers", "2",
                           workdir=root)
        try:
            result = fuzz(gw.url, max_time=args.max_time, checks=args.checks, workdir=root)
        finally:
            exit_status = gw.stop()
        stderr = gw.stderr_path.read_text()
    tracebacks = stderr.count("Traceback")
    print(f"schemathesis: {result['generated']} test cases generated, exit status {result['exit_status']}")
    print(f"5xx responses: {result['server_error_responses']}; gateway tracebacks: {tracebacks}; "
          f"gateway exit status {exit_status}")
    print(f"findings of the other checks: {result['failures'] or 'none'}")
    if result["failure_section"]:
        print(result["failure_section"])
    found = " ".join(result["failures"])
    ok = result["server_error_responses"] == 0 and tracebacks == 0 and "ST101" not in found and "ST102" not in found
    print("no server error" if ok else "SERVER ERRORS FOUND")
    if not args.no_write:
        path = write_result("fuzz_api", {"max_time_s": args.max_time, "checks": args.checks, **result,
                                         "gateway_tracebacks": tracebacks, "no_server_error": ok})
        print(f"wrote {path.relative_to(PROJECT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
