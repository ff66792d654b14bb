"""Cluster outputs: clusters.json, a terminal table, and a self-contained HTML report with timelines.

The table and the HTML report are for people and get pasted and shared: every text they copy
from the logs (titles, templates, distinguishing values, example messages) and from the policy
repository (commit subjects) goes through `policyctl.redact` first, before it is cut short.
clusters.json is the drafter's input and keeps the values as logged.
"""

from __future__ import annotations

import html
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

from policyctl.cluster.core import ClusterResult
from policyctl.errors import RepoError
from policyctl.model.cluster import Cluster, ClusterReport, Totals, compared_with
from policyctl.model.values import human
from policyctl.redact import redact_text

if TYPE_CHECKING:
    from policyctl.repo import Snapshot

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


# --------------------------------------------------------------------------- merges: rules that answer a cluster


@dataclass(frozen=True)
class Merge:
    """The commit that brought a rule answering a cluster (`custom.cluster`) onto the policy repository's branch."""

    fingerprint: str
    sha: str
    at: int  # committer time, seconds since the epoch
    subject: str
    file: str


def find_merges(repo: Path, ref: str = "HEAD", snap: Snapshot | None = None) -> dict[str, list[Merge]]:
    """Each fingerprint's merges: for every rule at `ref` whose METADATA names a cluster, the commit that added it.

    On a branch that takes rules in by merge (the bot's pull requests), the first-parent
    commit that added the file is the merge; a rule committed straight onto the branch is its own commit.
    """
    from policyctl.engine.modules import parse_module
    from policyctl.repo import snapshot

    snap = snap or snapshot(repo, ref)  # a caller that holds the ref's snapshot (the bot) passes it
    answers: dict[str, str] = {}
    for path in snap.paths("policies/", ".rego"):
        module, _ = parse_module(path, snap.files[path].decode("utf-8", "replace"))
        if module is not None and module.is_rule and module.cluster:
            answers[path] = module.cluster
    if not answers:
        return {}
    try:
        log = subprocess.run(["git", "log", "--first-parent", "--diff-filter=A", "--no-renames", "--name-only",
                              "--format=%x00%H %ct %s", str(snap.revision), "--", *answers],
                             cwd=repo, check=True, capture_output=True, text=True, errors="replace").stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RepoError(f"{repo}: git log of the rule files failed: {detail.strip()}") from exc
    out: dict[str, list[Merge]] = {}
    seen: set[str] = set()
    for entry in log.split("\0")[1:]:
        header, _, files = entry.partition("\n")
        sha, at, subject = (header.split(" ", 2) + [""])[:3]
        for file in filter(None, (f.strip() for f in files.splitlines())):
            if file in answers and file not in seen:  # newest first: the addition that is live now
                seen.add(file)
                out.setdefault(answers[file], []).append(Merge(answers[file], sha, int(at), subject, file))
    return out


# --------------------------------------------------------------------------- HTML


def _shown(text: str, limit: int | None = None) -> str:
    """Log text fit for the report: secrets masked, then cut to `limit`, then escaped."""
    return html.escape(redact_text(text)[:limit])


def _tip(text: str, limit: int | None = None) -> str:
    """Like _shown, for a hover text: cut with an ellipsis rather than mid-word without one."""
    clean = redact_text(text)
    if limit is not None and len(clean) > limit:
        clean = clean[:limit - 1] + "…"
    return html.escape(clean)


STATUS_COLOURS = {"error": "#d62728", "timeout": "#ff7f0e", "crash": "#9467bd", "deadlock": "#8c564b",
                  "denied": "#7f7f7f", "ok": "#2ca02c"}
EXTRA_COLOURS = ["#1f77b4", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939"]
# one timeline's drawing, in SVG user units: about its pixel size in a card at 1280 px and at 375 px
TW, TH, LEFT, RIGHT, TOP, BOTTOM = 360, 150, 34, 8, 18, 34
TICK_STEPS = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400)
RARE_LISTED = 60


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _span_text(start: int, step: int) -> str:
    a, b = _utc(start), _utc(start + step)
    if step % 86400 == 0:
        return a.strftime("%a %d %b") + ("" if step == 86400 else b.strftime(" – %a %d %b"))
    same_day = a.date() == b.date() or b == b.replace(hour=0, minute=0)
    return a.strftime("%a %d %b %H:%M") + "–" + (b.strftime("%H:%M") if same_day else b.strftime("%a %d %b %H:%M"))


def _ticks(start: int, end: int) -> list[tuple[int, str]]:
    """Round times between start and end, at most five, labelled as a date or a time of day."""
    span = max(end - start, 1)
    step = next((s for s in TICK_STEPS if span / s <= 5), -(-span // (5 * 86400)) * 86400)
    first = -(-start // step) * step
    out = []
    for at in range(first, end + 1, step):
        t = _utc(at)
        label = t.strftime("%d %b") if step >= 86400 or (t.hour == 0 and t.minute == 0) else t.strftime("%H:%M")
        out.append((at, label))
    return out


def _timeline_svg(c: Cluster, colour: str, merges: list[Merge]) -> tuple[str, str]:
    """One cluster's failures per bucket as an inline SVG, and a note for merges outside its window."""
    tl = c.timeline
    assert tl is not None
    start = int(datetime.fromisoformat(tl.start).timestamp())
    n = max(len(tl.counts), 1)
    end = start + n * tl.step
    top = max(max(tl.counts, default=0), 1)
    pw, ph = TW - LEFT - RIGHT, TH - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + (at - start) / (end - start) * pw

    templates = "&#10;".join(f"{t.count} × {_tip(t.template, 90)}" for t in c.templates[:3])
    parts = [f'<svg class=tl viewBox="0 0 {TW} {TH}" role="img" '
             f'aria-label="{c.size} failures of {html.escape(c.fingerprint)} over time">']
    for frac in (0.5, 1.0):  # gridlines and labels at half and full height
        y = TOP + ph * (1 - frac)
        value = top * frac
        label = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        parts.append(f'<line class=grid x1="{LEFT}" x2="{TW - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="tick y" x="{LEFT - 4}" y="{y + 3:.1f}">{label}</text>')
    parts.append(f'<text class="tick y" x="{LEFT - 4}" y="{TOP + ph + 3}">0</text>')
    bw = pw / n
    for i, k in enumerate(tl.counts):
        at = start + i * tl.step
        tip = f"{_span_text(at, tl.step)} UTC: {k} failure{'s' if k != 1 else ''}&#10;{templates}"
        h = ph * k / top
        bar = (f'<rect class=bar x="{LEFT + i * bw + 0.5:.1f}" y="{TOP + ph - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
               f'height="{h:.1f}" fill="{colour}"/>') if k else ""
        parts.append(f'<g><title>{tip}</title><rect class=hit x="{LEFT + i * bw:.1f}" y="{TOP}" width="{bw:.1f}" '
                     f'height="{ph}"/>{bar}</g>')
    parts.append(f'<line class=axis x1="{LEFT}" x2="{TW - RIGHT}" y1="{TOP + ph}" y2="{TOP + ph}"/>')
    for at, label in _ticks(start, end):
        parts.append(f'<line class=axis x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}"/>'
                     f'<text class="tick x" x="{x(at):.1f}" y="{TOP + ph + 15}">{label}</text>')
    parts.append(f'<text class=unit x="{TW - RIGHT}" y="{TH - 3}">failures per {_step_text(tl.step)} · time (UTC)</text>')
    outside = []
    for m in sorted(merges, key=lambda m: m.at):
        label = f"{m.sha[:7]} {_tip(m.subject, 60)}"
        when = _utc(m.at).strftime("%d %b %Y %H:%M UTC")
        if start <= m.at <= end:
            mx = x(m.at)
            anchor = "end" if mx > LEFT + pw * 0.6 else "start"
            dx = -3 if anchor == "end" else 3
            parts.append(f'<g class=merge><title>rule {html.escape(m.file)} merged {when}: {label}</title>'
                         f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP - 12}" y2="{TOP + ph}"/>'
                         f'<text x="{mx + dx:.1f}" y="{TOP - 5}" style="text-anchor:{anchor}">merged {m.sha[:7]}</text></g>')
        else:
            side = "before" if m.at < start else "after"
            outside.append(f"rule merged {side} this window, {when}: <code>{label}</code>")
    parts.append("</svg>")
    return "".join(parts), "<br>".join(outside)


def _step_text(step: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if step % size == 0:
            k = step // size
            return f"{k} {unit}" + ("s" if unit == "day" and k != 1 else "")
    return f"{step} s"


def _status_colours(clusters: list[Cluster]) -> dict[str, str]:
    seen: dict[str, int] = {}
    for c in clusters:
        for status, k in (c.statuses or {c.status: c.size}).items():
            seen[status] = seen.get(status, 0) + k
    extra = iter(EXTRA_COLOURS * (1 + len(seen) // len(EXTRA_COLOURS)))
    return {s: STATUS_COLOURS.get(s) or next(extra) for s in sorted(seen, key=lambda s: -seen[s])}


def _sizes(clusters: list[Cluster], rare: list[Cluster], colours: Mapping[str, str]) -> str:
    """A bar per cluster, its length its failures, its segments their outcome statuses; one bar for the rare."""
    rows = [(c.fingerprint, _shown(c.title, 80), c.statuses or {c.status: c.size}, c.size) for c in clusters]
    if rare:
        statuses: dict[str, int] = {}
        for c in rare:
            for s, k in (c.statuses or {c.status: c.size}).items():
                statuses[s] = statuses.get(s, 0) + k
        rows.append(("", f"one-off failures ({len(rare)} kinds)", statuses, sum(c.size for c in rare)))
    top = max((r[3] for r in rows), default=1)
    out = []
    for fp, label, statuses, size in rows:
        segs = "".join(f"<span style='width:{100 * k / top:.2f}%;background:{colours[s]}' "
                       f"title='{html.escape(s)}: {k}'></span>" for s, k in statuses.items() if k)
        anchor = f"<a href='#c-{html.escape(fp)}'>{label}</a>" if fp else label
        out.append(f"<div class=size><div class=label>{anchor}</div><div class=track>{segs}</div>"
                   f"<div class=count>{size}</div></div>")
    legend = " ".join(f"<span class=key><span class=sw style='background:{c}'></span>{html.escape(s)}</span>"
                      for s, c in colours.items())
    return "".join(out) + f"<p class=legend>{legend}</p>"


def _map(clusters: list[Cluster], points: list[tuple[float, float, int, int]], colour_of: Mapping[str, str]) -> str:
    """The templates on a plane: near means alike (text and failing traffic); the axes are the two main directions."""
    w, h, left, bottom, pad = 640, 400, 40, 36, 14
    biggest = max((p[2] for p in points), default=1)
    circles = []
    for x, y, size, ci in sorted(points, key=lambda p: -p[2]):
        c = clusters[ci] if 0 <= ci < len(clusters) else None
        cx = left + pad + (x + 1) / 2 * (w - left - 2 * pad)
        cy = pad + (1 - (y + 1) / 2) * (h - bottom - 2 * pad)
        r = 3 + 20 * (size / biggest) ** 0.5
        colour = colour_of.get(c.fingerprint, "#bbbbbb") if c is not None else "#bbbbbb"
        tip = (f"{_tip(c.title, 90)}&#10;{size} failure{'s' if size != 1 else ''} in this template "
               f"({c.size} in the cluster)") if c is not None else f"{size} failures"
        circles.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{colour}" fill-opacity="0.6" '
                       f'stroke="#333" stroke-width="0.5"><title>{tip}</title></circle>')
    axes = (f'<line class=axis x1="{left}" y1="{h - bottom}" x2="{w}" y2="{h - bottom}"/>'
            f'<line class=axis x1="{left}" y1="0" x2="{left}" y2="{h - bottom}"/>'
            f'<text x="{(left + w) / 2:.0f}" y="{h - 12}" style="text-anchor:middle">← main direction of difference →'
            f'</text><text transform="translate(14 {(h - bottom) / 2:.0f}) rotate(-90)" style="text-anchor:middle">'
            "← second direction →</text>")
    return (f"<details class=map><summary>Map of the templates by likeness</summary><p class=lead>Each circle is a log "
            "template (or a deadlock cycle), its area its failures, its colour its cluster (grey: one-off). Circles "
            "close together have messages and failing traffic that look alike; far apart, they differ. The axes are "
            "the two directions along which the templates differ most (a projection of their embeddings): only "
            "nearness means something, not where a circle is on an axis.</p>"
            f'<svg class=plane viewBox="0 0 {w} {h}" role="img" aria-label="map of failure templates by likeness">'
            f'<rect x="{left}" width="{w - left}" height="{h - bottom}" fill="#fafafa"/>{"".join(circles)}{axes}'
            "</svg></details>")


def _row(cells: list[tuple[str, str, str]]) -> str:
    """A table row of (column name, class, HTML) cells; the name is what a reflowed row shows above each value."""
    return "<tr>" + "".join(f"<td{f' class={cls}' if cls else ''} data-label='{name}'>{value}</td>"
                            for name, cls, value in cells) + "</tr>"


def _table(columns: list[str], rows: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    return (f"<div class='scroll reflow'><table{f' class={cls}' if cls else ''}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def render_html(doc: ClusterReport, points: list[tuple[float, float, int, int]] | None = None,
                merges: Mapping[str, list[Merge]] | None = None) -> str:
    """One file, no scripts or fonts from elsewhere: cluster sizes, a map, a timeline per cluster, tables.

    `points` (x, y, events, cluster index per template; ClusterResult.unit_coords) places the
    templates on the map. `merges` (find_merges) marks on a cluster's timeline when a rule
    answering it was merged.
    """
    merges = merges or {}
    clusters = doc.clusters
    recurring = [c for c in clusters if c.systemic or c.basis == "text"]
    rare = [c for c in clusters if not c.systemic and c.basis != "text"]
    colour_of = {c.fingerprint: EXTRA_COLOURS[i % len(EXTRA_COLOURS)] if c.basis == "text" else PALETTE[i % len(PALETTE)]
                 for i, c in enumerate(recurring)}
    t = doc.totals
    versus = compared_with(doc.contrast)
    baseline = (f"against {t.successes} successful events" if doc.contrast == "successes" else
                f"with {t.successes} successful events, too few to compare with: each cluster is compared with the "
                "other failures")

    cards = []
    for c in recurring:
        kind = "systemic" if c.systemic else "recurring, no policy handle"
        head = (f"<h3><span class=sw style='background:{colour_of[c.fingerprint]}'></span>{_shown(c.title, 90)}</h3>"
                f"<p class=meta><code>{html.escape(c.fingerprint)}</code> · {c.size} failures · {kind}</p>")
        if c.timeline is not None:
            svg, note = _timeline_svg(c, colour_of[c.fingerprint], merges.get(c.fingerprint, []))
        else:
            svg, note = "<p class=none>its events carry no timestamps</p>", ""
        top = "".join(f"<li><b>{k.count}</b> × <code>{_shown(k.template, 140)}</code></li>" for k in c.templates[:3])
        cards.append(f"<article class=card id='c-{html.escape(c.fingerprint)}'>{head}{svg}"
                     f"{f'<p class=note>{note}</p>' if note else ''}<ul class=tpl>{top}</ul></article>")

    rows = []
    for c in doc.systemic:
        dist = "<br>".join(_shown(f"{d.field} = {d.value}: {100 * d.share:.0f}% here, {100 * d.success_share:.0f}% of {versus}")
                           for d in c.distinguishing[:4])
        dist += "".join("<br>" + _shown(f"{n.field} {n.direction} {human(n.threshold)}: "
                                        f"{100 * n.success_share_beyond:.0f}% of {versus}")
                        for n in c.numeric[:2])
        examples = "<br>".join(_shown(str(e.get("message") or ""), 160) for e in c.examples[:3])
        rows.append(_row([
            ("fingerprint", "", f"<span class=sw style='background:{colour_of[c.fingerprint]}'></span>"
                                f"<code>{html.escape(c.fingerprint)}</code>"),
            ("title", "", _shown(c.title)), ("events", "n", str(c.size)), ("share", "n", f"{100 * c.share:.1f}%"),
            ("first / last seen", "when",
             f"{html.escape((c.first_seen or '')[:19])}<br>{html.escape((c.last_seen or '')[:19])}"),
            ("what sets it apart", "", dist), ("examples", "ex", examples)]))
    systemic_section = ("<h2>What sets each systemic cluster apart</h2>" + _table(
        ["fingerprint", "title", "events", "share", "first / last seen", "what sets it apart", "examples"],
        rows)) if rows else ""
    text_rows = [_row([("fingerprint", "", f"<code>{html.escape(c.fingerprint)}</code>"), ("title", "", _shown(c.title)),
                       ("events", "n", str(c.size)), ("runs", "n", str(c.runs or "")),
                       ("shared words", "", _shown(", ".join(c.terms))),
                       ("examples", "ex", "<br>".join(_shown(str(e.get("message") or ""), 160) for e in c.examples[:3]))])
                 for c in doc.text_clusters]
    text_section = ("<h2>Recurring failures without a policy handle</h2><p>No input field sets these apart from the "
                    "rest; they are grouped by what their messages say. No pull request is drafted for them.</p>" +
                    _table(["fingerprint", "title", "events", "runs", "shared words", "examples"], text_rows, "text")
                    ) if text_rows else ""
    rare_rows = []
    for c in sorted(rare, key=lambda c: (-c.size, c.first_seen or "", c.fingerprint))[:RARE_LISTED]:
        template = c.templates[0].template if c.templates else c.title
        example = next((str(e.get("message") or "") for e in c.examples), "")
        rare_rows.append(_row([("template", "", f"<code>{_shown(template, 160)}</code>"), ("events", "n", str(c.size)),
                               ("status", "", html.escape(c.status)),
                               ("first seen", "when", html.escape((c.first_seen or "")[:19])),
                               ("example", "ex", _shown(example, 200))]))
    more = f"<p>and {len(rare) - RARE_LISTED} more in clusters.json</p>" if len(rare) > RARE_LISTED else ""
    rare_section = (f"<h2 id=rare>One-off failures</h2><p>{t.rare_events} failures in {len(rare)} groups too small to "
                    "recur (fewer events than a cluster needs, or nothing sets them apart). Worth a look: "
                    "tomorrow's systemic failure starts here.</p>" +
                    _table(["template", "events", "status", "first seen", "example"], rare_rows, "rare") + more
                    ) if rare_rows else ""
    sizes = _sizes(recurring, rare, _status_colours(clusters)) if clusters else "<p>No failures.</p>"
    plane = _map(clusters, points, colour_of) if points else ""
    marked = sum(len(v) for v in merges.values())
    merge_line = (f" A dashed line marks the merge of a rule that answers the cluster ({marked} in all)."
                  if marked else "")
    timelines = (f"<h2>Over time</h2><p class=lead>Failures per time bucket, one chart per cluster; hover a bar for its "
                 f"count and the cluster's commonest messages.{merge_line}</p><div class=grid>{''.join(cards)}</div>"
                 if cards else "")
    text_count = (f"{t.text_clusters} recurring failures without a policy handle holding {t.text_events} events; "
                  if t.text_clusters else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>policyctl failure clusters</title>
<style>
* {{ box-sizing: border-box; }}
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; padding: 0 24px; max-width: 1360px; color: #222; }}
h1 {{ font-size: 24px; margin: 0 0 4px; }} h2 {{ font-size: 18px; margin: 32px 0 8px; }}
h3 {{ font-size: 14px; margin: 0; overflow-wrap: anywhere; }}
p.lead, p.legend, p.meta, p.note {{ color: #555; }} p.meta {{ margin: 2px 0 6px; font-size: 12px; overflow-wrap: anywhere; }}
code {{ font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; vertical-align: baseline; }}
.size {{ display: grid; grid-template-columns: minmax(0, 34%) 1fr 4em; gap: 8px; align-items: center; margin: 3px 0; }}
.size .label {{ overflow: hidden; text-overflow: ellipsis; white-space: nowrap; font-size: 13px; }}
.size .label a {{ color: inherit; text-decoration: none; }} .size .label a:hover {{ text-decoration: underline; }}
.size .track {{ display: flex; height: 14px; background: #f3f3f3; border-radius: 2px; overflow: hidden; }}
.size .count {{ text-align: right; font-variant-numeric: tabular-nums; }}
.key {{ margin-right: 12px; white-space: nowrap; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 360px), 1fr)); gap: 16px; }}
.card {{ border: 1px solid #e2e2e2; border-radius: 6px; padding: 12px; min-width: 0; }}
svg.tl {{ width: 100%; height: auto; display: block; overflow: visible; }}
details.map {{ margin-top: 12px; }} details.map summary {{ cursor: pointer; color: #1f4e8c; }}
svg.plane {{ width: 100%; max-width: 640px; height: auto; display: block; }}
svg.plane text {{ font: 12px system-ui, sans-serif; fill: #555; }} svg.plane .axis {{ stroke: #888; }}
svg.tl .hit {{ fill: transparent; }} svg.tl g:hover .hit {{ fill: #eef3fa; }} svg.tl g:hover .bar {{ opacity: 0.75; }}
svg.tl .grid {{ stroke: #eee; }} svg.tl .axis {{ stroke: #888; }}
svg.tl text {{ font: 10px system-ui, sans-serif; fill: #555; }} svg.tl .tick.y {{ text-anchor: end; }}
svg.tl .tick.x {{ text-anchor: middle; }} svg.tl .unit {{ text-anchor: end; fill: #888; }}
svg.tl .merge line {{ stroke: #111; stroke-width: 1.5; stroke-dasharray: 4 3; }} svg.tl .merge text {{ fill: #111; font-weight: 600; }}
ul.tpl {{ margin: 6px 0 0; padding-left: 18px; font-size: 12px; color: #444; }} ul.tpl li {{ overflow-wrap: anywhere; }}
.scroll {{ overflow-x: auto; -webkit-overflow-scrolling: touch; }}
table {{ border-collapse: collapse; margin-top: 8px; min-width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 6px 8px; vertical-align: top; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }} td.when {{ white-space: nowrap; font-size: 12px; }}
td.ex {{ font-family: ui-monospace, monospace; font-size: 12px; color: #555; max-width: 420px; overflow-wrap: anywhere; }}
@media (max-width: 640px) {{
  body {{ margin: 12px auto; padding: 0 12px; font-size: 13px; }} h1 {{ font-size: 20px; }}
  .size {{ grid-template-columns: 1fr 3em; gap: 2px 8px; }} .size .label {{ grid-column: 1 / -1; }}
  .reflow table, .reflow tbody, .reflow tr, .reflow td {{ display: block; width: 100%; min-width: 0; }}
  .reflow thead {{ display: none; }} .reflow tr {{ border-bottom: 1px solid #ccc; padding: 8px 0; }}
  .reflow td {{ border: 0; padding: 2px 0; text-align: left; max-width: none; overflow-wrap: anywhere; }}
  .reflow td::before {{ content: attr(data-label); display: block; font: 600 11px system-ui, sans-serif; color: #777; }}
  .reflow td.n::before, .reflow td.when::before {{ display: inline; margin-right: 8px; }}
  .reflow td.when br {{ display: none; }} .reflow td.when {{ white-space: normal; }}
}}
</style></head><body>
<h1>Failure clusters</h1>
<p class=lead>{t.failures} failures {baseline}: <b>{t.systemic_clusters} systemic clusters</b>
holding {t.systemic_events} events; {text_count}{t.rare_events} rare one-off failures. Embedder: {html.escape(doc.embedder)}.</p>
<h2>Where the failures are</h2>
<p class=lead>Each bar is a cluster; its length is its failures, its colours their outcome status.</p>
{sizes}
{plane}
{timelines}
{systemic_section}
{text_section}
{rare_section}
</body></html>
"""


def dumps(doc: ClusterReport) -> str:
    """clusters.json as `policyctl cluster -o` writes it."""
    return json.dumps(doc.to_dict(), indent=1, default=str) + "\n"
