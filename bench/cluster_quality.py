"""Cluster quality on both shipped worlds against the simulator's truth sidecar, and on agent transcripts.

    python bench/cluster_quality.py [--events 20000] [--seeds 1 2 3] [--embedders minilm tfidf]
                                    [--worlds demo fleet] [--corpus tune:1 heldout:2]

For each world and seed: simulate through a policy set with no rules (main.rego only, so
every fault shows), cluster, and score the systemic clusters against the truth: adjusted
Rand index and adjusted mutual information over fault events (noise excluded; events in
rare clusters count as one "not systemic" label), and how many noise events leak into
systemic clusters. Fingerprint stability: for each fault, whether the fingerprint of the
cluster holding most of its events is the same in every seed.
Targets: ARI >= 0.9, noise leakage < 1%, stable fingerprints >= 90%.

Agent transcripts (bench/corpora/agent_transcripts.py, failures only, labelled by failure
kind; `tune` is what the text thresholds were chosen on, `heldout` has other wordings and
another seed): AMI and ARI against the labels over every event (rare events count as one
"not grouped" label) of ours with each embedder, and, measured in the same run, of word
TF-IDF + KMeans with k = the number of labels (mean of three seeds) and of grouping the
events by their structured fields (every categorical input field and the status; and the
coarse step type, tool and status). Targets: ours (minilm) above both baselines, and
minilm above tfidf, on each corpus (three seeds of each variant); the summary gives, per
variant, on how many seeds each target holds and the mean AMI of each method.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PROJECT, table, write_result  # noqa: E402


def bare_repo(root: Path) -> Path:
    repo = root / "bare"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies/main.rego").write_text((PROJECT / "policies/main.rego").read_text())
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@policyctl.local"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", *ident, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "bare"], cwd=repo, check=True)
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--embedders", nargs="+", default=["minilm", "tfidf"])
    parser.add_argument("--worlds", nargs="*", default=["demo", "fleet"])
    parser.add_argument("--corpus", nargs="*", type=corpus_spec,
                        default=[f"{v}:{seed}{long}" for long in ("", ":long") for v in ("tune", "heldout")
                                 for seed in (1, 2, 3)],
                        help="agent-transcript corpora as variant:seed[:long]")
    args = parser.parse_args()
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    from policyctl.cli.main import main as cli
    from policyctl.cluster import cluster_logs

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        repo = bare_repo(Path(tmp))
        for world in args.worlds:
            logs = {}
            for seed in args.seeds:
                log = Path(tmp) / f"{world}-{seed}.jsonl"
                assert cli(["simulate", "--world", world, "--events", str(args.events), "--seed", str(seed),
                            "--repo", str(repo), "-o", str(log)]) == 0
                logs[seed] = log
            for embedder in args.embedders:
                fingerprints: dict[str, list[str]] = {}
                for seed, log in logs.items():
                    truth = {}
                    for line in log.with_name(log.name.replace(".jsonl", ".truth.jsonl")).read_text().splitlines():
                        r = json.loads(line)
                        truth[r["id"]] = "noise" if r["noise"] else r["fault"]
                    t = time.perf_counter()
                    doc, _ = cluster_logs([log], embedder=embedder)
                    seconds = time.perf_counter() - t
                    pred = {}
                    for i, c in enumerate(doc.clusters):
                        for m in c.members:
                            pred[m] = i if c.systemic else -1
                    fault_ids = [i for i in pred if truth.get(i) not in (None, "noise")]
                    ari = adjusted_rand_score([truth[i] for i in fault_ids], [pred[i] for i in fault_ids])
                    ami = adjusted_mutual_info_score([truth[i] for i in fault_ids], [pred[i] for i in fault_ids])
                    noise = [i for i in pred if truth.get(i) == "noise"]
                    leaked = sum(1 for i in noise if pred[i] != -1)
                    faults = sorted({f for f in truth.values() if f not in (None, "noise")})
                    for fault in faults:
                        owners = Counter(pred[i] for i in fault_ids if truth[i] == fault)
                        best = owners.most_common(1)[0][0]
                        fingerprints.setdefault(fault, []).append(doc.clusters[best].fingerprint if best >= 0 else "-")
                    systemic = len(doc.systemic)
                    results.append({"world": world, "seed": seed, "embedder": embedder, "ari": round(ari, 4),
                                    "ami": round(ami, 4), "faults": len(faults), "systemic_clusters": systemic,
                                    "noise_events": len(noise), "noise_leaked": leaked,
                                    "noise_leak_pct": round(100 * leaked / max(len(noise), 1), 3),
                                    "seconds": round(seconds, 2)})
                    rows.append([world, seed, embedder, f"{ari:.3f}", f"{ami:.3f}", f"{systemic}/{len(faults)}",
                                 f"{leaked}/{len(noise)}", f"{seconds:.1f}"])
                stable = sum(1 for fps in fingerprints.values() if len(set(fps)) == 1 and "-" not in fps)
                results.append({"world": world, "embedder": embedder, "stable_fingerprints": stable,
                                "faults": len(fingerprints), "fingerprints": fingerprints})
                rows.append([world, "all", embedder, "", "", f"stable fingerprints {stable}/{len(fingerprints)}", "", ""])
        corpora = [corpus_scores(Path(tmp), spec, args.embedders) for spec in args.corpus]
    summary: dict[str, Any] = {}
    if results:
        print(table(rows, ["world", "seed", "embedder", "ARI", "AMI", "systemic/faults", "noise leaked", "seconds"]))
        scored = [r for r in results if "ari" in r]
        stab = [r for r in results if "stable_fingerprints" in r]
        summary = {"min_ari": min(r["ari"] for r in scored),
                   "mean_ari": round(sum(r["ari"] for r in scored) / len(scored), 4),
                   "max_noise_leak_pct": max(r["noise_leak_pct"] for r in scored),
                   "stable_fingerprint_share": round(sum(r["stable_fingerprints"] for r in stab) /
                                                     sum(r["faults"] for r in stab), 4)}
        summary["met"] = (summary["min_ari"] >= 0.9 and summary["max_noise_leak_pct"] < 1
                          and summary["stable_fingerprint_share"] >= 0.9)
    if corpora:
        crow = [[c["variant"], c["events"], c["labels"], m["method"], f"{m['ami']:.3f}", f"{m['ari']:.3f}",
                 m.get("groups", ""), m.get("seconds", "")] for c in corpora for m in c["methods"]]
        print(table(crow, ["corpus", "events", "labels", "method", "AMI", "ARI", "groups", "seconds"]))
        summary["transcripts"] = {}
        for variant in sorted({c["variant"] for c in corpora}):
            mine = [c for c in corpora if c["variant"] == variant]
            methods = [m["method"] for m in mine[0]["methods"]]
            summary["transcripts"][variant] = {
                "seeds": [c["seed"] for c in mine],
                "mean_ami": {m: round(sum(x["ami"] for c in mine for x in c["methods"] if x["method"] == m) / len(mine), 4)
                             for m in methods},
                "targets_held": {t: f"{sum(c['targets'][t] for c in mine)}/{len(mine)}" for t in mine[0]["targets"]}}
        summary["transcripts_met"] = all(all(c["targets"].values()) for c in corpora)
    print(json.dumps(summary))
    path = write_result("cluster_quality", {"events_per_log": args.events, "summary": summary, "runs": results,
                                            "transcripts": corpora,
                                            "targets": {"ari": ">= 0.9", "noise_leak_pct": "< 1", "stable_fingerprints": ">= 0.9",
                                                        "transcripts": "AMI: ours (minilm) > TF-IDF+KMeans and > structured "
                                                                       "fields; ours minilm > ours tfidf"}})
    print(f"wrote {path}")
    return 0


def parse_corpus(spec: str) -> tuple[str, int, bool]:
    """`variant:seed[:long]` as (variant, seed, long messages); ValueError for anything else."""
    variant, _, rest = spec.partition(":")
    seed, _, shape = rest.partition(":")
    if variant not in ("tune", "heldout") or not seed.isdigit() or shape not in ("", "long"):
        raise ValueError(f"corpus {spec!r}: expected tune:SEED or heldout:SEED, optionally :long")
    return variant, int(seed), shape == "long"


def corpus_spec(spec: str) -> str:
    """An argparse type: one agent-transcript corpus (see `parse_corpus`)."""
    try:
        parse_corpus(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return spec


def corpus_set(spec: str) -> str:
    """The set a corpus is summarised in: its variant, and long messages a set of their own (tune-long)."""
    variant, _, long = parse_corpus(spec)
    return f"{variant}-long" if long else variant


def corpus_of(spec: str) -> Any:
    """The agent-transcript corpus a spec names."""
    from corpora.agent_transcripts import generate

    variant, seed, long = parse_corpus(spec)
    return generate(seed, variant, long=long)


def transcript_log(tmp: Path, spec: str) -> tuple[Any, Path]:
    """The agent-transcript corpus `variant:seed` and its events written under `tmp` (once)."""
    from corpora.agent_transcripts import write

    corpus = corpus_of(spec)
    log = tmp / f"transcripts-{spec.replace(':', '-')}.jsonl"
    if not log.exists():
        write(corpus, log)
    return corpus, log


def ours(log: Path, ids: list[str], embedder: str) -> tuple[list[int], Any, float]:
    """Each event's cluster under ours (rare events all -1, one "not grouped" label), the report, seconds."""
    from policyctl.cluster import cluster_logs

    t = time.perf_counter()
    doc, _ = cluster_logs([log], embedder=embedder)
    seconds = round(time.perf_counter() - t, 2)
    owner = {m: (n if c.basis != "rare" else -1) for n, c in enumerate(doc.clusters) for m in c.members}
    return [owner[i] for i in ids], doc, seconds


def corpus_scores(tmp: Path, spec: str, embedders: list[str]) -> dict[str, Any]:
    """Ours with each embedder, TF-IDF + KMeans and grouping by fields, on one agent-transcript corpus."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    variant, seed = corpus_set(spec), parse_corpus(spec)[1]
    corpus, log = transcript_log(tmp, spec)
    ids = [e["id"] for e in corpus.events]
    truth = [corpus.labels[i] for i in ids]
    k = len(set(truth))

    def score(method: str, pred: list[Any], **extra: Any) -> dict[str, Any]:
        return {"method": method, "ami": round(adjusted_mutual_info_score(truth, pred), 4),
                "ari": round(adjusted_rand_score(truth, pred), 4), **extra}

    methods = []
    for embedder in embedders:
        pred, doc, seconds = ours(log, ids, embedder)
        methods.append(score(f"ours ({embedder})", pred, groups=len(doc.clusters) - sum(
            c.basis == "rare" for c in doc.clusters), seconds=seconds, contrast=doc.contrast,
            systemic=len(doc.systemic), text_clusters=len(doc.text_clusters), rare_events=doc.totals.rare_events))
    matrix = TfidfVectorizer(sublinear_tf=True).fit_transform([e["outcome"]["message"] for e in corpus.events])
    runs = [score("kmeans", list(KMeans(n_clusters=k, n_init=10, random_state=s).fit_predict(matrix))) for s in range(3)]
    methods.append({"method": f"tfidf+kmeans (k={k})", "ami": round(float(np.mean([r["ami"] for r in runs])), 4),
                    "ari": round(float(np.mean([r["ari"] for r in runs])), 4), "groups": k})

    def fields(e: dict[str, Any], coarse: bool) -> str:
        i, a = e["input"], e["input"]["action"]
        key = [a["type"], a.get("tool"), e["outcome"]["status"]]
        if not coarse:
            key += [i["context"]["system"], i["context"]["benchmark"], a.get("model"), i["agents"][0]["role"]]
        return json.dumps(key)

    for coarse in (False, True):
        pred = [fields(e, coarse) for e in corpus.events]
        methods.append(score("fields (step type, tool, status)" if coarse else "fields (all categorical)", pred,
                             groups=len(set(pred))))
    ami = {m["method"]: m["ami"] for m in methods}
    best_baseline = max(v for m, v in ami.items() if not m.startswith("ours"))
    targets = {}
    if "ours (minilm)" in ami:
        targets["minilm_above_baselines"] = ami["ours (minilm)"] > best_baseline
    if "ours (tfidf)" in ami:
        targets["tfidf_above_baselines"] = ami["ours (tfidf)"] > best_baseline
    if "ours (minilm)" in ami and "ours (tfidf)" in ami:
        targets["minilm_above_tfidf"] = ami["ours (minilm)"] > ami["ours (tfidf)"]
    return {"variant": variant, "seed": int(seed), "events": len(ids), "labels": k, "methods": methods,
            "targets": targets}


if __name__ == "__main__":
    sys.exit(main())
