"""Redaction: leaks of the secret corpus and false positives on ordinary logs, against detect-secrets alone.

    python bench/redaction.py [--events 3000] [--seed 1] [--examples 3]

Leaks: every format of tests/test_redact.py's corpus, put in every field of a PR body, of an
LLM prompt and of an evidence sample (the same builders the tests use); a leak is any 8
characters of a secret found in what policyctl writes. Must be 0.

False positives: texts that `redact_text` changes although they hold no secret, on
- the demo world: the messages and codes of the ok events of `policyctl simulate --world
  demo` on a policy set of main.rego only (the corpus the masker was tuned on);
- Loghub (/work/shared/bench/loghub/*/*_2k.log, 16 systems, 32,000 lines of real system
  logs): looked at while the masker was written; the path and camelCase rules were adjusted
  after lines of BGL, Hadoop, HealthApp, Mac and Thunderbird;
- this machine's package logs (/var/log/dpkg.log, apt/history.log, alternatives.log), never
  looked at while tuning; skipped where absent.
A changed line is counted as `addresses` when only IP and e-mail addresses were masked (by
design: they identify people and hosts) and as `secrets` otherwise; examples of the latter
are printed so a person can judge them.

Baseline, in the same run: detect-secrets' 27 plugins as its scanner runs them on a text
file (default settings, quoted strings for the entropy and keyword plugins), each value they
find replaced.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import PROJECT, table, write_result  # noqa: E402

from policyctl.cli.main import main as cli  # noqa: E402
from policyctl.redact import redact_text, redact_value  # noqa: E402

LOGHUB = Path("/work/shared/bench/loghub")
PACKAGE_LOGS = ["/var/log/dpkg.log", "/var/log/apt/history.log", "/var/log/alternatives.log"]
ADDRESSES = {"<ip>", "<email>"}
_PLACEHOLDER = re.compile(r"<(?:private-key|password|token|redacted|secret|email|ip)>")


def baseline() -> Callable[[str], str]:
    """detect-secrets alone: every plugin with its default settings, as on a text file, each finding replaced."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins = [cls() for cls in get_mapping_from_secret_type_to_class().values()]

    def mask(text: str) -> str:
        found = {str(s.secret_value) for line in text.splitlines() for p in plugins
                 for s in p.analyze_line(filename="events.log", line=line) if s.secret_value}
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, "<secret>")
        return text

    return mask


def leaks(mask: Callable[[str], str] | None) -> dict[str, Any]:
    """Corpus formats leaked by each place text leaves policyctl (mask None: policyctl's own pipeline)."""
    import test_redact as t

    places: dict[str, Callable[[str], str]] = (
        {"pr_body": t.body_of, "prompt": t.prompt_of, "evidence": lambda text: t.sample_evidence(
            t.draft(), t.evidence_of(text).train, t.evidence_of(text).ok).decode(), "text": redact_text}
        if mask is None else {"text": mask})
    out: dict[str, Any] = {"corpus": len(t.CORPUS)}
    for place, render in places.items():
        out[place] = sorted(c.name for c in t.CORPUS if c.leaks(render(c.text)))
    return out


def demo_records(events: int, seed: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "main-only"
        (repo / "policies").mkdir(parents=True)
        (repo / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
        (repo / "policyctl.toml").write_text((PROJECT / "policyctl.toml").read_text())
        for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "main only"]):
            subprocess.run(["git", *args], cwd=repo, check=True)
        log = Path(tmp) / "events.jsonl"
        assert cli(["simulate", "--world", "demo", "--events", str(events), "--seed", str(seed), "--repo", str(repo),
                    "-q", "-o", str(log)]) == 0
        return [json.loads(line) for line in log.read_text().splitlines()]


def ok_texts(records: list[dict[str, Any]]) -> list[str]:
    """The messages and codes of the ok events: what a reviewer reads as logged."""
    return [str(e["outcome"][k]) for e in records if e["outcome"].get("status") == "ok"
            for k in ("message", "code") if e["outcome"].get(k)]


def evidence_cost(records: list[dict[str, Any]]) -> dict[str, Any]:
    """`redact_value` over whole records, as the evidence sample masks them, cold cache, against orjson.dumps."""
    import orjson

    from policyctl import redact

    redact._cached.cache_clear()
    started = time.process_time()
    masked = [redact_value(e) for e in records]
    cpu = time.process_time() - started
    started = time.process_time()
    for e in masked:
        orjson.dumps(e)
    dumps = time.process_time() - started
    strings = sum(1 for e in records for _ in _strings(e))
    return {"records": len(records), "strings": strings, "ms": round(1e3 * cpu, 1),
            "us_per_record": round(1e6 * cpu / max(1, len(records)), 1),
            "orjson_dumps_ms": round(1e3 * dumps, 1), "changed_records": sum(a != b for a, b in zip(records, masked, strict=True))}


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def false_positives(name: str, texts: list[str], mask: Callable[[str], str], examples: int) -> dict[str, Any]:
    started = time.process_time()
    changed = [(t, m) for t in texts if (m := mask(t)) != t]
    cpu = time.process_time() - started
    secrets = [(t, m) for t, m in changed if set(_PLACEHOLDER.findall(m)) - ADDRESSES]
    return {"corpus": name, "texts": len(texts), "changed": len(changed),
            "changed_pct": round(100 * len(changed) / max(1, len(texts)), 3),
            "secrets_changed": len(secrets), "secrets_changed_pct": round(100 * len(secrets) / max(1, len(texts)), 3),
            "us_per_text": round(1e6 * cpu / max(1, len(texts)), 1),
            "examples": [{"before": t[:240], "after": m[:240]} for t, m in secrets[:examples]]}


def loghub_texts() -> dict[str, list[str]]:
    return {Path(f).parent.name: Path(f).read_text(errors="replace").splitlines()
            for f in sorted(glob.glob(str(LOGHUB / "*" / "*_2k.log")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--examples", type=int, default=3, help="changed lines shown per corpus and system")
    args = ap.parse_args()

    ours = leaks(None)
    theirs = leaks(baseline())
    print(f"corpus: {ours['corpus']} secret formats")
    print(table([["policyctl.redact", *(len(ours[p]) for p in ("text", "pr_body", "prompt", "evidence"))],
                 ["detect-secrets alone", len(theirs["text"]), "", "", ""]],
                ["leaks", "text", "PR body", "prompt", "evidence"]))
    print(f"  detect-secrets alone leaks: {', '.join(theirs['text'])}\n")

    mask_ds = baseline()
    records = demo_records(args.events, args.seed)
    corpora = {"demo world ok events (tuned on)": ok_texts(records)}
    hub = loghub_texts()
    if hub:
        corpora["Loghub, 16 systems (seen while tuning)"] = [line for lines in hub.values() for line in lines]
    package = [line for f in PACKAGE_LOGS if Path(f).is_file() for line in Path(f).read_text(errors="replace").splitlines()]
    if package:
        corpora["this machine's package logs (untuned)"] = package
    rows, fp, fp_baseline = [], [], []
    redact_text("warm up")  # detect-secrets loads on first use: not a per-line cost
    for name, texts in corpora.items():
        mine = false_positives(name, texts, redact_text, args.examples)
        base = false_positives(name, texts, mask_ds, 0)
        fp.append(mine)
        fp_baseline.append(base)
        rows.append([name, mine["texts"], f"{mine['changed']} ({mine['changed_pct']}%)",
                     f"{mine['secrets_changed']} ({mine['secrets_changed_pct']}%)", mine["us_per_text"],
                     f"{base['changed']} ({base['changed_pct']}%)", base["us_per_text"]])
    print(table(rows, ["corpus", "texts", "changed", "secrets masked", "us/text",
                       "detect-secrets: changed", "us/text"]))
    by_system = []
    for system, lines in hub.items():
        r = false_positives(system, lines, redact_text, args.examples)
        by_system.append(r)
    if by_system:
        print("\nLoghub by system (lines where more than addresses were masked):")
        print(table([[r["corpus"], r["texts"], r["secrets_changed"], r["changed"]] for r in by_system],
                    ["system", "lines", "secrets masked", "changed"]))
    redact_text("warm up")
    cost = evidence_cost(records)
    print(f"\nevidence masking: {cost['records']} demo records ({cost['strings']} strings), cold cache: "
          f"{cost['ms']} ms ({cost['us_per_record']} us/record; orjson.dumps of them {cost['orjson_dumps_ms']} ms); "
          f"{cost['changed_records']} records changed")
    print("\nExamples to judge (before / after):")
    for r in [*fp, *by_system]:
        for ex in r["examples"]:
            print(f"  [{r['corpus']}]\n    {ex['before']}\n    {ex['after']}")
    path = write_result("redaction", {
        "leaks": ours, "leaks_detect_secrets_alone": theirs, "false_positives": fp,
        "false_positives_detect_secrets_alone": [{k: v for k, v in b.items() if k != "examples"} for b in fp_baseline],
        "loghub_by_system": by_system, "evidence_masking": cost,
        "note": "changed = any placeholder; secrets = a placeholder other than <ip>/<email>"})
    print(f"\nwrote {path}")
    if any(ours[p] for p in ("text", "pr_body", "prompt", "evidence")):
        sys.exit("leaks: " + json.dumps(ours))


if __name__ == "__main__":
    main()
