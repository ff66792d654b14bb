"""Loghub-2k grouping: the template miner against Drain3 defaults, scored by the benchmark's own scorer.

    python bench/loghub.py [--data ../shared/bench/loghub] [--repeat 3] [--predictions DIR] [--check]

On the 16 Loghub-2k systems (2,000 lines each, corrected ground truth of Khan
et al., ICSE 2022) both miners read the same input, the Content column of each
system's structured CSV, through `run_drain3_baseline.contents`. The baseline is
`run_drain3_baseline.mine` itself (Drain3, library defaults, no masks); ours is
`TemplateMiner()` with its one default configuration, each line's id resolved
after the last line (a template merged later counts as the one it joined).
Predictions are written as `<System>.csv` (LineId,ClusterId) and scored by
`eval_grouping.py` (GA, FGA, PGA, RGA, pairwise F1, ARI, NMI). Speed is the
median over --repeat runs of each system's mining loop, the two miners taking
turns. Targets: average GA >= 0.95 and FGA >= 0.90, and at least Drain3's lines
per second; --check exits 1 when one is missed.

The data stays in shared/ (its licence allows research use with a citation, no
redistribution): Jieming Zhu, Shilin He, Pinjia He, Jinyang Liu, Michael R. Lyu.
Loghub: A Large Collection of System Log Datasets for AI-driven Log Analytics.
ISSRE 2023. The scorer needs pandas and scikit-learn, the baseline drain3.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, table, write_result  # noqa: E402

from policyctl.cluster.templates import TemplateMiner  # noqa: E402

DATA = PROJECT.parent / "shared" / "bench" / "loghub"
TARGET_GA = 0.95
TARGET_FGA = 0.90
METRICS = ["GA", "FGA", "PGA", "RGA", "PF1", "ARI", "NMI"]

Lines = list[tuple[str, str]]
Predictions = list[tuple[str, Any]]


def load_script(path: Path) -> ModuleType:
    """Import one of the benchmark's own scripts from where it lies."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"Error: {path}: cannot import")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mine_ours(lines: Lines) -> Predictions:
    miner = TemplateMiner()
    ids = [(line_id, miner.add(text)) for line_id, text in lines]
    return [(line_id, miner.resolve(tid)) for line_id, tid in ids]


def write_predictions(directory: Path, system: str, predictions: Predictions) -> None:
    with (directory / f"{system}.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["LineId", "ClusterId"])
        out.writerows(predictions)


def score(scorer: ModuleType, data: Path, directory: Path) -> dict[str, Any]:
    """Run eval_grouping.py on a directory of predictions; its JSON, rows keyed by system."""
    out = directory / "_scores.json"
    argv = ["--pred-dir", str(directory), "--gt", "corrected", "--gt-root", str(data)]
    if scorer.main([*argv, "--out-json", str(out), "--quiet"]) != 0:
        raise SystemExit(f"Error: eval_grouping.py failed on {directory}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["rows"] = {row.pop("dataset"): row for row in result["rows"]}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help=f"the Loghub-2k folder (default {DATA})")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per system and miner (median)")
    ap.add_argument("--predictions", type=Path, help="keep the prediction CSVs here (default: a temporary folder)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every target is met")
    args = ap.parse_args(argv)
    data: Path = args.data.resolve()
    if not (data / "run_drain3_baseline.py").is_file() or not (data / "eval_grouping.py").is_file():
        print(f"Error: {data}: no Loghub-2k benchmark here (run_drain3_baseline.py, eval_grouping.py); pass --data", file=sys.stderr)
        return 2
    baseline = load_script(data / "run_drain3_baseline.py")
    scorer = load_script(data / "eval_grouping.py")
    logging.disable(logging.CRITICAL)  # as run_drain3_baseline.py does: Drain3 logs every cluster

    miners: dict[str, Callable[[Lines], Predictions]] = {"ours": mine_ours, "drain3": baseline.mine}
    systems: list[str] = baseline.systems()
    inputs: dict[str, Lines] = {s: baseline.contents(s) for s in systems}
    seconds: dict[str, dict[str, float]] = {name: {} for name in miners}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.predictions.resolve() if args.predictions else Path(tmp)
        for name in miners:
            (root / name).mkdir(parents=True, exist_ok=True)
        for system in systems:
            runs: dict[str, list[float]] = {name: [] for name in miners}
            predictions: dict[str, Predictions] = {}
            for _ in range(max(1, args.repeat)):
                for name, mine in miners.items():  # taking turns, so that noise hits both
                    start = time.perf_counter()
                    predictions[name] = mine(inputs[system])
                    runs[name].append(time.perf_counter() - start)
            for name in miners:
                write_predictions(root / name, system, predictions[name])
                seconds[name][system] = statistics.median(runs[name])
        scores = {name: score(scorer, data, root / name) for name in miners}

    lines = {s: len(inputs[s]) for s in systems}
    report: dict[str, Any] = {}
    for name in miners:
        total_s = sum(seconds[name].values())
        report[name] = {
            "average": {m: round(scores[name]["average"][m], 4) for m in ["GA", "FGA", "PF1", "ARI", "NMI"]},
            "lines_per_s": round(sum(lines.values()) / total_s),
            "seconds": round(total_s, 4),
            "systems": {
                s: {
                    **{m: round(scores[name]["rows"][s][m], 4) for m in METRICS},
                    "groups": scores[name]["rows"][s]["pred_groups"],
                    "lines_per_s": round(lines[s] / seconds[name][s]),
                }
                for s in systems
            },
        }
        for m in ["PGA", "RGA"]:
            report[name]["average"][m] = round(statistics.fmean(scores[name]["rows"][s][m] for s in systems), 4)

    ours, drain3 = report["ours"], report["drain3"]
    rows = [
        [s, lines[s], scores["ours"]["rows"][s]["gt_groups"], ours["systems"][s]["groups"], drain3["systems"][s]["groups"],
         f"{ours['systems'][s]['GA']:.3f}", f"{drain3['systems'][s]['GA']:.3f}",
         f"{ours['systems'][s]['FGA']:.3f}", f"{drain3['systems'][s]['FGA']:.3f}",
         ours["systems"][s]["lines_per_s"], drain3["systems"][s]["lines_per_s"]]
        for s in systems
    ]
    rows.append(["AVERAGE", sum(lines.values()), "", "", "",
                 f"{ours['average']['GA']:.3f}", f"{drain3['average']['GA']:.3f}",
                 f"{ours['average']['FGA']:.3f}", f"{drain3['average']['FGA']:.3f}",
                 ours["lines_per_s"], drain3["lines_per_s"]])
    print(table(rows, ["system", "lines", "truth", "ours", "drain3", "GA ours", "GA drain3",
                       "FGA ours", "FGA drain3", "lines/s ours", "lines/s drain3"]))
    print()
    print(table([[name, *(f"{report[name]['average'][m]:.3f}" for m in METRICS)] for name in miners],
                ["average", *METRICS]))

    met = {
        "GA": ours["average"]["GA"] >= TARGET_GA,
        "FGA": ours["average"]["FGA"] >= TARGET_FGA,
        "speed": ours["lines_per_s"] >= drain3["lines_per_s"],
    }
    path = write_result("loghub", {
        "data": os.path.relpath(data, PROJECT),
        "ground_truth": "corrected (Khan et al., ICSE 2022), grouped by EventTemplate",
        "input": "Content column of <System>_2k.log_structured_corrected.csv, read by run_drain3_baseline.contents",
        "miners": {
            "ours": "policyctl.cluster.templates.TemplateMiner() defaults, ids resolved after the last line",
            "drain3": "run_drain3_baseline.mine: Drain3 library defaults, no masks",
        },
        "repeat": args.repeat,
        "targets": {"GA": f">= {TARGET_GA}", "FGA": f">= {TARGET_FGA}", "speed": "lines/s >= drain3 in the same run"},
        "met": met,
        **report,
    })
    print(f"\nGA {ours['average']['GA']:.3f} (drain3 {drain3['average']['GA']:.3f}), "
          f"FGA {ours['average']['FGA']:.3f} (drain3 {drain3['average']['FGA']:.3f}), "
          f"{ours['lines_per_s']:,} lines/s (drain3 {drain3['lines_per_s']:,}); "
          f"targets {'met' if all(met.values()) else 'MISSED: ' + ', '.join(k for k, v in met.items() if not v)}; "
          f"wrote {path.relative_to(PROJECT)}")
    return 1 if args.check and not all(met.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
