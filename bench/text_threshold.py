"""Each embedder's text distance, chosen on the tuning variant of the transcript corpus.

    python bench/text_threshold.py [--corpus tune:1 tune:2 tune:3] [--embedders minilm tfidf]
                                   [--grid 0.6 0.65 ...] [--check heldout:10 heldout:11 ...]

`TEXT_DISTANCE` in policyctl/cluster/embed.py is, for each embedder, the cosine distance
under which two failure messages say the same thing (the text regrouping cuts average-linkage
trees there). This script shows how it was chosen: ours with each embedder on each tuning
corpus (bench/corpora/agent_transcripts.py), for every distance of one grid, scored by AMI
against the corpus's labels as bench/cluster_quality.py scores it, and the distance with the
best mean. Every embedder gets the same grid and the same corpora. With --check, ours with
each embedder at its best tuning distance is also scored on the corpora given there: pass
seeds that no decision has seen, and read them once.

The shipped distances are marked; the script changes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402
from cluster_quality import corpus_spec, ours, transcript_log  # noqa: E402

GRID = [0.6, 0.65, 0.7, 0.72, 0.75, 0.78, 0.8, 0.85, 0.88, 0.9, 0.92, 0.95]


def ours_ami(tmp: Path, spec: str, embedder: str) -> float:
    """AMI of ours on one corpus, scored as bench/cluster_quality.py scores it, at the current distance."""
    from sklearn.metrics import adjusted_mutual_info_score

    corpus, log = transcript_log(tmp, spec)
    ids = [e["id"] for e in corpus.events]
    pred, _, _ = ours(log, ids, embedder)
    return round(float(adjusted_mutual_info_score([corpus.labels[i] for i in ids], pred)), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", type=corpus_spec, default=["tune:1", "tune:2", "tune:3"],
                        help="the tuning corpora, as variant:seed")
    parser.add_argument("--embedders", nargs="+", default=["minilm", "tfidf"], choices=["minilm", "tfidf"])
    parser.add_argument("--grid", type=float, nargs="+", default=GRID)
    parser.add_argument("--check", nargs="*", type=corpus_spec, default=[],
                        help="corpora to score at each embedder's best distance")
    args = parser.parse_args()
    if any(not 0 < d < 1 for d in args.grid):
        parser.error("--grid: cosine distances between 0 and 1")
    from policyctl.cluster import embed

    shipped = dict(embed.TEXT_DISTANCE)
    rows: list[list[Any]] = []
    result: dict[str, Any] = {"corpora": args.corpus, "grid": args.grid, "shipped": shipped, "embedders": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.embedders:
            scores: dict[float, list[float]] = {}
            try:
                for distance in args.grid:
                    embed.TEXT_DISTANCE[name] = distance
                    scores[distance] = [ours_ami(Path(tmp), spec, name) for spec in args.corpus]
                    mean = sum(scores[distance]) / len(scores[distance])
                    mark = " (shipped)" if abs(distance - shipped[name]) < 1e-9 else ""
                    rows.append([name, f"{distance:.2f}{mark}", *(f"{x:.3f}" for x in scores[distance]), f"{mean:.3f}"])
                    print(f"{name} {distance:.2f}: mean AMI {mean:.3f}", file=sys.stderr, flush=True)
                best = max(args.grid, key=lambda d: (sum(scores[d]) / len(scores[d]), -abs(d - shipped[name])))
                entry: dict[str, Any] = {
                    "ami": {f"{d:.2f}": scores[d] for d in args.grid},
                    "mean_ami": {f"{d:.2f}": round(sum(scores[d]) / len(scores[d]), 4) for d in args.grid},
                    "best": best, "shipped": shipped[name]}
                if args.check:
                    embed.TEXT_DISTANCE[name] = best
                    checked = [ours_ami(Path(tmp), spec, name) for spec in args.check]
                    entry["check"] = {"corpora": args.check, "ami": checked,
                                      "mean_ami": round(sum(checked) / len(checked), 4)}
                result["embedders"][name] = entry
            finally:
                embed.TEXT_DISTANCE[name] = shipped[name]
    print(table(rows, ["embedder", "distance", *args.corpus, "mean"]))
    for name, entry in result["embedders"].items():
        line = f"{name}: best on {', '.join(args.corpus)} at {entry['best']:.2f} (shipped {entry['shipped']:.2f})"
        if "check" in entry:
            line += f"; at it, on {', '.join(args.check)}: " + " ".join(f"{x:.3f}" for x in entry["check"]["ami"]) \
                    + f", mean {entry['check']['mean_ami']:.3f}"
        print(line)
    path = write_result("text_threshold", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
