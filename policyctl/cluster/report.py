"""Cluster outputs: clusters.json, a terminal table, and a self-contained HTML report with a 2-D map.

The table and the HTML report are for people and get pasted and shared: every text they copy
from the logs (titles, templates, distinguishing values, example messages) goes through
`policyctl.redact` first, before it is cut short. clusters.json is the drafter's input and
keeps the values as logged.
"""

from __future__ import annotations

import html
import json
from io import StringIO

from policyctl.cluster.core import ClusterResult
from policyctl.model.cluster import ClusterReport, Totals
from policyctl.model.values import human
from policyctl.redact import redact_text

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def to_report(result: ClusterResult) -> ClusterReport:
    systemic = [c for c in result.clusters if c.systemic]
    text = [c for c in result.clusters if c.basis == "text"]
    s = result.stats
    return ClusterReport(
        embedder=result.embedder, contrast=result.contrast, inputs=s.files,
        totals=Totals(lines=s.lines, rejected=s.rejected, truncated=s.truncated, failures=result.failures,
                      successes=result.successes, systemic_clusters=len(systemic),
                      systemic_events=sum(c.size for c in systemic), text_clusters=len(text),
                      text_events=sum(c.size for c in text), rare_events=result.rare_events),
        problems=[p.to_dict() for p in s.problems], warnings=[p.to_dict() for p in s.warnings],
        clusters=[c.to_record() for c in result.clusters],
    )


def render_table(doc: ClusterReport, limit: int = 30) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    console = Console(file=buf, width=140, color_system=None)
    t = doc.totals
    console.print(f"{t.failures} failures ({t.successes} ok events as the baseline): "
                  f"{t.systemic_clusters} systemic clusters holding {t.systemic_events} events; "
                  f"{t.rare_events} rare one-off failures")
    if doc.contrast == "other_failures":
        console.print("too few successful events to compare with: each cluster is compared with the other failures")
    table = Table()
    for col in ("fingerprint", "size", "share", "title", "first seen", "last seen", "roles"):
        table.add_column(col, overflow="fold")
    for c in doc.systemic[:limit]:
        table.add_row(c.fingerprint, str(c.size), f"{100 * c.share:.1f}%", redact_text(c.title),
                      (c.first_seen or "")[:19], (c.last_seen or "")[:19],
                      redact_text(", ".join(list(c.roles)[:4])))
    console.print(table)
    for c in doc.text_clusters[:limit]:
        console.print(f"recurring, no policy handle (no PR): {c.size} x {redact_text(c.title)}" +
                      (f" [{redact_text(', '.join(c.terms))}]" if c.terms else ""))
    rare = [c for c in doc.clusters if c.basis == "rare"]
    if rare:
        console.print(f"rare: {len(rare)} groups, e.g. " + "; ".join(f"{redact_text(c.templates[0].template)[:50]!r} x{c.size}" for c in rare[:3]))
    if t.rejected:
        console.print(f"{t.rejected} malformed lines skipped; first: " +
                      "; ".join(f"{p['file']}:{p['line']}: {redact_text(str(p['message']))}" for p in doc.problems[:3]))
    return buf.getvalue()


def _shown(text: str, limit: int | None = None) -> str:
    """Log text fit for the report: secrets masked, then cut to `limit`, then escaped."""
    return html.escape(redact_text(text)[:limit])


def render_html(doc: ClusterReport, points: list[tuple[float, float, int, int]]) -> str:
    """One file, no scripts or fonts from elsewhere: an SVG map of templates coloured by cluster, and a table."""
    clusters = doc.clusters
    systemic_index = {i for i, c in enumerate(clusters) if c.systemic}
    w, h, pad = 720, 480, 30
    biggest = max((p[2] for p in points), default=1)
    circles = []
    for x, y, size, ci in sorted(points, key=lambda p: -p[2]):
        cx = pad + (x + 1) / 2 * (w - 2 * pad)
        cy = pad + (1 - (y + 1) / 2) * (h - 2 * pad)
        r = 3 + 22 * (size / biggest) ** 0.5
        colour = PALETTE[ci % len(PALETTE)] if ci in systemic_index else "#bbbbbb"
        tip = html.escape(f"{clusters[ci].fingerprint}: {size} events") if ci < len(clusters) else ""
        circles.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{colour}" fill-opacity="0.6" '
                       f'stroke="#333" stroke-width="0.5"><title>{tip}</title></circle>')
    versus = "other failures" if doc.contrast == "other_failures" else "ok traffic"
    rows = []
    for i, c in enumerate(clusters):
        if not c.systemic:
            continue
        colour = PALETTE[i % len(PALETTE)]
        dist = "<br>".join(_shown(f"{d.field} = {d.value}: {100 * d.share:.0f}% here, {100 * d.success_share:.0f}% of {versus}")
                           for d in c.distinguishing[:4])
        dist += "".join("<br>" + _shown(f"{n.field} {n.direction} {human(n.threshold)}: "
                                        f"{100 * n.success_share_beyond:.0f}% of {versus}")
                        for n in c.numeric[:2])
        examples = "<br>".join(_shown(str(e.get("message") or ""), 160) for e in c.examples[:3])
        rows.append(f"<tr><td><span class=sw style='background:{colour}'></span><code>{html.escape(c.fingerprint)}</code></td>"
                    f"<td>{_shown(c.title)}</td><td class=n>{c.size}</td><td class=n>{100 * c.share:.1f}%</td>"
                    f"<td>{html.escape((c.first_seen or '')[:19])}<br>{html.escape((c.last_seen or '')[:19])}</td>"
                    f"<td>{dist}</td><td class=ex>{examples}</td></tr>")
    t = doc.totals
    text_rows = [f"<tr><td><code>{html.escape(c.fingerprint)}</code></td><td>{_shown(c.title)}</td>"
                 f"<td class=n>{c.size}</td><td class=n>{c.runs or ''}</td><td>{_shown(', '.join(c.terms))}</td>"
                 f"<td class=ex>{'<br>'.join(_shown(str(e.get('message') or ''), 160) for e in c.examples[:3])}</td></tr>"
                 for c in doc.text_clusters]
    text_section = ("<h2>Recurring failures without a policy handle</h2><p>No input field sets these apart from the "
                    "rest; they are grouped by what their messages say. No pull request is drafted for them.</p>"
                    "<table class=text><tr><th>fingerprint</th><th>title</th><th>events</th><th>runs</th>"
                    f"<th>shared words</th><th>examples</th></tr>{''.join(text_rows)}</table>") if text_rows else ""
    baseline = (f"against {t.successes} successful events" if doc.contrast == "successes" else
                f"with {t.successes} successful events, too few to compare with: each cluster is compared with the "
                "other failures")
    bars = []
    top = max((c.size for c in clusters if c.systemic), default=1)
    for i, c in enumerate(clusters):
        if c.systemic:
            bars.append(f"<div class=bar><span style='width:{300 * c.size / top:.0f}px;background:{PALETTE[i % len(PALETTE)]}'></span>"
                        f" {html.escape(c.fingerprint)} ({c.size})</div>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>policyctl failure clusters</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 16px; }} td, th {{ border-bottom: 1px solid #ddd; padding: 6px 8px; vertical-align: top; text-align: left; }}
td.n {{ text-align: right; }} td.ex {{ font-family: ui-monospace, monospace; font-size: 12px; color: #555; max-width: 420px; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }}
.bar span {{ display: inline-block; height: 10px; }} .wrap {{ display: flex; gap: 24px; align-items: flex-start; }}
</style></head><body>
<h1>Failure clusters</h1>
<p>{t.failures} failures {baseline}: <b>{t.systemic_clusters} systemic clusters</b>
holding {t.systemic_events} events; {t.text_clusters} recurring failures without a policy handle holding
{t.text_events} events; {t.rare_events} rare one-off failures (grey). Embedder: {html.escape(doc.embedder)}.</p>
<div class=wrap>
<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="2-D map of failure templates">
<rect width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>
{''.join(circles)}
</svg>
<div><h3>Sizes</h3>{''.join(bars)}<p style="max-width:320px;color:#666">Each circle is a log template (or a deadlock cycle),
sized by its events and placed by a projection of its text embedding and the traffic it fails on; colours are clusters.</p></div>
</div>
<table><tr><th>fingerprint</th><th>title</th><th>events</th><th>share</th><th>first / last seen</th><th>what sets it apart</th><th>examples</th></tr>
{''.join(rows)}
</table>
{text_section}</body></html>
"""


def dumps(doc: ClusterReport) -> str:
    """clusters.json as `policyctl cluster -o` writes it."""
    return json.dumps(doc.to_dict(), indent=1, default=str) + "\n"
