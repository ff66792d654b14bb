"""Render a ShadowReport as a terminal table, Markdown (for the pull request), JUnit XML or JSON."""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from policyctl.model.shadow import ShadowReport

FORMATS = ("table", "json", "markdown", "junit")


def _short(rev: str) -> str:
    return rev[:12]


def _headline(r: ShadowReport) -> list[tuple[str, str]]:
    t = r.t
    rows = [
        ("fixtures", f"{t['fixtures_passed']} passed, {t['fixtures_failed']} failed of {t['fixtures']}"),
        ("logged events", f"{t['events']} ({t['failures']} failures, {t['successes']} ok, {t['denied']} denied)"),
        ("changed decisions", f"{t['changed']} of {t['records']}"),
        ("failures prevented", f"{t['prevented']} of {t['failures']} ({r.prevented_pct:.1f}%), {t['newly_prevented']} newly by the candidate; {t['exposed']} still exposed"),
        ("collateral", f"{t['collateral']} of {t['successes']} ok events changed ({r.collateral_pct:.2f}%, budget {r.max_collateral_pct:g}%)"),
        ("in-region changes", f"{t['in_region']} ok events inside a rule's failure region, changed by design (not collateral)"),
        ("evaluation errors", f"base {t['errors_base']}, candidate {t['errors_candidate']}"),
    ]
    if r.lines_rejected:
        rows.append(("malformed log lines", f"{r.lines_rejected} skipped (see problems)"))
    return rows


def _matrix_rows(r: ShadowReport) -> list[tuple[str, str, int, str]]:
    """(scope, transition, count, changed?) rows: overall, then per rule and per fixture file."""
    rows = [("all records", k, v, "" if k.split("→")[0] == k.split("→")[1] else "changed")
            for k, v in sorted(r.partial.matrix.items(), key=lambda kv: -kv[1])]
    return rows


def _per(r: ShadowReport, what: str) -> list[tuple[str, str, str]]:
    source = r.partial.by_rule if what == "rule" else r.partial.by_file
    out = []
    for name, counts in sorted(source.items()):
        changed = {k: v for k, v in counts.items() if k.split("→")[0] != k.split("→")[1]}
        same = sum(v for k, v in counts.items() if k not in changed)
        text = ", ".join(f"{k} {v}" for k, v in sorted(changed.items(), key=lambda kv: -kv[1])) or "no change"
        extra = f" (cluster {r.rule_clusters[name]})" if what == "rule" and r.rule_clusters.get(name) else ""
        out.append((name + extra, text, f"{same} unchanged"))
    return out


def render_table(r: ShadowReport) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=120, force_terminal=False, color_system=None)
    console.print(f"Shadow replay: base {_short(r.base)} → candidate {_short(r.candidate)}   {r.verdict}")
    summary = Table(show_header=False, box=None, pad_edge=False)
    for k, v in _headline(r):
        summary.add_row(k, v)
    console.print(summary)
    matrix = Table(title="Transitions (base → candidate)", title_justify="left")
    matrix.add_column("transition")
    matrix.add_column("records", justify="right")
    matrix.add_column("")
    for _, name, n, changed in _matrix_rows(r):
        matrix.add_row(name, str(n), changed)
    console.print(matrix)
    for what in ("rule", "fixture file"):
        rows = _per(r, "rule" if what == "rule" else "file")
        if rows:
            per = Table(title=f"By {what}", title_justify="left")
            per.add_column(what)
            per.add_column("changed")
            per.add_column("unchanged")
            for row in rows:
                per.add_row(*row)
            console.print(per)
    for kind, title in (("failing_fixture", "Failing fixtures"), ("collateral", "Collateral: ok traffic that changes"),
                        ("exposed", "Failures still exposed")):
        examples = r.examples(kind)
        if examples:
            console.print(f"{title}:")
            for e in examples:
                console.print(f"  {e.ref} ({e.where}): {e.base.get('action')} → {e.candidate.get('action')}; {'; '.join(e.detail)}")
                console.print(f"    input: {json.dumps(e.input, sort_keys=True)[:300]}")
    if r.partial.problems:
        console.print(f"Problems ({len(r.partial.problems)}):")
        for p in r.partial.problems[:20]:
            console.print(f"  {p}")
    return buf.getvalue()


def render_markdown(r: ShadowReport) -> str:
    icon = "✅" if r.exit_code == 0 else "❌"
    out = [f"### {icon} Shadow replay: `{_short(r.base)}` → `{_short(r.candidate)}`", "", f"**{r.verdict}**", "",
           "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _headline(r)]
    out += ["", "#### Transitions (base → candidate)", "", "| transition | records | |", "|---|---:|---|"]
    out += [f"| {k} | {v} | {c} |" for _, k, v, c in _matrix_rows(r)]
    for what, title in (("rule", "By rule"), ("file", "By fixture file")):
        rows = _per(r, what)
        if rows:
            out += ["", f"#### {title}", "", "| | changed | unchanged |", "|---|---|---|"]
            out += [f"| `{a}` | {b} | {c} |" for a, b, c in rows]
    for kind, title in (("failing_fixture", "Failing fixtures"), ("collateral", "Collateral (ok traffic that changes)"),
                        ("exposed", "Failures still exposed")):
        examples = r.examples(kind)
        if examples:
            out += ["", f"#### {title}", ""]
            for e in examples:
                out.append(f"<details><summary><code>{escape(e.ref)}</code> ({escape(e.where)}): "
                           f"{e.base.get('action')} → {e.candidate.get('action')}</summary>")
                brief = e.to_dict()  # without decision ids or revisions: the same replay renders the same text
                out += ["", "```json", json.dumps({"input": brief["input"], "base": brief["base"],
                                                   "candidate": brief["candidate"], "detail": brief["detail"]},
                                                  indent=2, sort_keys=True), "```", "</details>"]
    if r.partial.problems:
        out += ["", f"#### Problems ({len(r.partial.problems)})", ""]
        out += [f"- `{escape(str(p))}`" for p in r.partial.problems[:20]]
    return "\n".join(out) + "\n"


def render_junit(r: ShadowReport) -> str:
    cases = []
    failures = 0
    for f in r.partial.fixture_results:
        name = quoteattr(str(f["id"]))
        classname = quoteattr(str(f["file"]).replace("/", ".").removesuffix(".jsonl"))
        if f["passed"]:
            cases.append(f"    <testcase classname={classname} name={name}/>")
        else:
            failures += 1
            body = json.dumps({"input": f.get("input"), "expect": f.get("expect"), "decision": f.get("decision")},
                              indent=2, sort_keys=True)
            cases.append(f"    <testcase classname={classname} name={name}>\n"
                         f"      <failure message={quoteattr('; '.join(f['problems']))}>{escape(body)}</failure>\n"
                         f"    </testcase>")
    budget_ok = not r.over_budget
    if not budget_ok:
        failures += 1
    cases.append("    <testcase classname=\"shadow\" name=\"collateral budget\">" +
                 ("" if budget_ok else f"\n      <failure message={quoteattr(r.verdict)}/>\n    ") + "</testcase>")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<testsuites>\n  <testsuite name=\"policyctl shadow\" tests=\"{len(cases)}\" failures=\"{failures}\">\n"
            + "\n".join(cases) + "\n  </testsuite>\n</testsuites>\n")


def render(r: ShadowReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(r.to_dict(), indent=2, default=_default) + "\n"
    if fmt == "markdown":
        return render_markdown(r)
    if fmt == "junit":
        return render_junit(r)
    return render_table(r)


def _default(value: Any) -> Any:
    return str(value)
