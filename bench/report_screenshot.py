"""Screenshots of the HTML cluster report in headless Chromium, at a desktop and a phone width.

    python bench/report_screenshot.py [--events 3000] [--seed 1] [--widths 1280 375]

Simulates the demo world (`policyctl simulate --world demo`) through a repository holding only
policies/main.rego, so every fault shows; clusters it with `--embedder tfidf`; then merges two
rules answering the two biggest clusters into that repository (merge commits dated inside the
logs' window, as the bot's pull requests would be) and renders the report with `--repo`, so
the timelines carry merge marks. Each width is shot at the page's full height (measured in a
first Chromium pass) into bench/results/report-<width>.png. The baseline in the same run is
the report's page height at each width: a layout that stopped reflowing shows as a page much
wider than the window (its scroll width), printed beside it.

Needs /usr/bin/chromium (`apt-get install chromium`); without it the script says so and
exits 0 (CI does not install it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, RESULTS, table, write_result  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
IDENTITY = ["-c", "user.name=bench", "-c", "user.email=bench@policyctl.local"]
# Headless Chromium lays a page out at least 500 px wide whatever --window-size says (and crops the
# screenshot), so the report is shown in an iframe of the wanted width: its media queries see that width.
FRAME = """<!doctype html><html><body style="margin:0;background:#fff">
<iframe id=f src="{src}" scrolling=no style="border:0;display:block;width:{width}px;height:{height}px"
 onload="var d=f.contentDocument.documentElement;
 document.body.setAttribute('data-size', d.scrollWidth + 'x' + d.scrollHeight)"></iframe></body></html>
"""
RULE = """# METADATA
# title: {title_yaml}
# description: A rule merged to answer cluster {fingerprint} (report_screenshot fixture; never served here).
# custom:
#   cluster: {fingerprint}
#   mode: enforce
package agentgov.rules.{name}

import rego.v1

decisions contains {{"action": "deny", "reason": "fixture"}} if false
"""


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout


def main_only_repo(root: Path) -> Path:
    """A policy repository with policies/main.rego and the demo world's vocabulary, as tests/test_bot.py builds it."""
    repo = root / "main-only"
    (repo / "policies").mkdir(parents=True)
    shutil.copy(PROJECT / "policies/main.rego", repo / "policies/main.rego")
    shutil.copy(PROJECT / "policyctl.toml", repo / "policyctl.toml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "main only", env={"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
                                                 "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"})
    return repo


def merge_rule(repo: Path, fingerprint: str, title: str, when: str, n: int) -> None:
    """A branch adding a rule whose custom.cluster is `fingerprint`, merged with --no-ff at `when`."""
    name = f"answer_{n}"
    env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    git(repo, "checkout", "-q", "-b", f"policyctl/{name}", "main")
    (repo / "policies/rules").mkdir(exist_ok=True)
    (repo / f"policies/rules/{name}.rego").write_text(RULE.format(title_yaml=json.dumps(title), fingerprint=fingerprint, name=name))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"rules: {title}", env=env)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", f"Merge policyctl/{name}: {title}", f"policyctl/{name}", env=env)


def chromium(*args: str, work: Path) -> subprocess.CompletedProcess[str]:
    profile = Path(tempfile.mkdtemp(dir=work, prefix="profile-"))  # a new empty profile each run
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", "--hide-scrollbars", "--allow-file-access-from-files",
                           f"--user-data-dir={profile}", *args],
                          check=True, capture_output=True, text=True, timeout=120)


def framed(page: Path, width: int, height: int, work: Path) -> Path:
    frame = work / f"frame-{width}x{height}.html"
    frame.write_text(FRAME.format(src=page.name, width=width, height=height))
    return frame


def page_size(page: Path, width: int, work: Path) -> tuple[int, int]:
    """The report's laid-out width and height (scrollWidth, scrollHeight) in a frame `width` px wide."""
    dom = chromium("--dump-dom", "--window-size=1400,900", framed(page, width, 900, work).as_uri(), work=work).stdout
    m = re.search(r'data-size="(\d+)x(\d+)"', dom)
    if m is None:
        raise SystemExit(f"{page}: Chromium did not lay the page out (no data-size in the dumped DOM)")
    return int(m.group(1)), int(m.group(2))


def shoot(page: Path, width: int, height: int, out: Path, work: Path) -> None:
    out.unlink(missing_ok=True)
    chromium(f"--window-size={width},{height}", f"--screenshot={out}", framed(page, width, height, work).as_uri(),
             work=work)
    if not out.is_file():
        raise SystemExit(f"{out}: Chromium wrote no screenshot")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--widths", type=int, nargs="+", default=[1280, 375])
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        print(f"skipped: {CHROMIUM} is not installed (apt-get install chromium); no screenshots taken")
        return 0
    from policyctl.cli.main import main as cli
    from policyctl.model.cluster import ClusterReport

    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        work = Path(tmp)
        repo = main_only_repo(work)
        log = work / "events.jsonl"
        if cli(["simulate", "--world", "demo", "--events", str(args.events), "--seed", str(args.seed),
                "--repo", str(repo), "-q", "-o", str(log)]) != 0:
            raise SystemExit("policyctl simulate failed")
        first = work / "first.json"
        if quiet(cli, ["cluster", str(log), "--embedder", "tfidf", "-o", str(first)]) != 0:
            raise SystemExit("policyctl cluster failed")
        doc = ClusterReport.from_dict(json.loads(first.read_text()))
        times = sorted(c.first_seen for c in doc.systemic if c.first_seen) + \
            sorted(c.last_seen for c in doc.systemic if c.last_seen)
        start, end = min(times), max(times)
        answered = []
        for n, (c, at) in enumerate(zip(doc.systemic[:2], (0.45, 0.8), strict=False)):
            when = _between(start, end, at)
            merge_rule(repo, c.fingerprint, f"answer {c.title[:50]}", when, n)
            answered.append({"fingerprint": c.fingerprint, "merged_at": when})
        page = work / "clusters.html"
        if quiet(cli, ["cluster", str(log), "--embedder", "tfidf", "--repo", str(repo), "--html", str(page)]) != 0:
            raise SystemExit("policyctl cluster --html failed")
        html = page.read_text()
        shots, rows = [], []
        for width in args.widths:
            scroll_width, height = page_size(page, width, work)
            out = RESULTS / f"report-{width}.png"
            shoot(page, width, height, out, work)
            shots.append({"width": width, "page_height": height, "scroll_width": scroll_width,
                          "png": str(out.relative_to(PROJECT)), "png_bytes": out.stat().st_size})
            rows.append([width, scroll_width, height, "yes" if scroll_width <= width else "NO",
                         out.relative_to(PROJECT)])
    print(table(rows, ["window px", "page width px", "page height px", "fits", "screenshot"]))
    print(f"{len(doc.clusters)} clusters ({len(doc.systemic)} systemic), {html.count('<svg class=tl')} timelines, "
          f"{html.count('class=merge')} merge marks, {len(html) / 1024:.0f} KiB of HTML")
    path = write_result("report_screenshot", {
        "events": args.events, "seed": args.seed, "embedder": "tfidf", "answered": answered,
        "clusters": len(doc.clusters), "timelines": html.count("<svg class=tl"),
        "merge_marks": html.count("class=merge"), "html_bytes": len(html), "screenshots": shots})
    print(f"results written to {path}")
    return 0 if all(s["scroll_width"] <= s["width"] for s in shots) else 1


def quiet(cli: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a policyctl command without its table on standard output (this script prints its own)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return cli(argv)


def _between(start: str, end: str, at: float) -> str:
    from datetime import UTC, datetime

    a, b = (datetime.fromisoformat(x).timestamp() for x in (start, end))
    return datetime.fromtimestamp(a + at * (b - a), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(main())
