"""How well each text space tells failure kinds apart where their wording does not.

    python bench/text_separation.py [--corpus tune:1 ... heldout:3:long]

The text regrouping joins failure messages whose vectors are close. Two messages of one kind
that share their words are close in any space; what a sentence model adds is the pairs whose
wording differs. This script measures that directly, with no clustering threshold in the way,
on the agent-transcript corpus (bench/corpora/agent_transcripts.py):

- the units are the templates the miner finds in the events' messages (what the clustering
  embeds), each labelled by the kind most of its events have;
- far-worded pairs are the pairs of units whose cosine in the tfidf space is below
  1 - TEXT_DISTANCE["tfidf"] (0.15): the pairs it places farther apart than its own text
  distance, so it never joins them directly;
- for each space, `auc` is the probability that a same-kind far-worded pair is closer than an
  other-kind one (ROC AUC; 0.5 is chance), over all pairs and over the far-worded ones;
  `nn` is how often a unit's nearest far-worded unit is of its kind, beside `chance`, the
  share of far-worded pairs that are.

The spaces: `meaning` (MiniLM alone, as `MiniLMEmbedder.meaning` reads a message), `wording`
(the tfidf space: character n-grams, read sentence by sentence) and `minilm` (the shipped
space: meaning beside the whole message's n-grams).
Nothing is chosen here: it is a measurement of the spaces, on tuning and held-out wordings.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, write_result  # noqa: E402
from cluster_quality import corpus_of, corpus_set, corpus_spec  # noqa: E402

SPACES = ("meaning", "wording", "minilm")


def units(spec: str) -> tuple[list[str], list[str]]:
    """The corpus's templates, as the clustering mines them, and the kind most of each one's events have."""
    from policyctl.cluster.templates import TemplateMiner

    corpus = corpus_of(spec)
    miner = TemplateMiner()
    mined = [(miner.add(e["outcome"]["message"]), corpus.labels[e["id"]]) for e in corpus.events]
    kinds: dict[str, Counter[str]] = {}
    for tid, kind in mined:
        kinds.setdefault(miner.template_of(miner.resolve(tid)).text, Counter())[kind] += 1
    texts = sorted(kinds)
    return texts, [kinds[t].most_common(1)[0][0] for t in texts]


def separation(similarity: Any, same: Any, far: Any, upper: Any) -> dict[str, float]:
    """AUC over all pairs (`upper`: each pair once) and over far-worded pairs; nearest far-worded neighbour's agreement."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    ranked = np.where(far, similarity, -np.inf)
    np.fill_diagonal(ranked, -np.inf)
    has = np.isfinite(ranked).any(axis=1)
    nearest = ranked.argmax(axis=1)
    return {"auc": round(float(roc_auc_score(same[upper], similarity[upper])), 3),
            "auc_far": round(float(roc_auc_score(same[upper & far], similarity[upper & far])), 3),
            "nn_far": round(float(same[np.arange(len(same)), nearest][has].mean()), 3)}


def corpus_separation(spec: str) -> dict[str, Any]:
    import numpy as np

    from policyctl.cluster.embed import TEXT_DISTANCE, MiniLMEmbedder, TfidfEmbedder

    texts, kinds = units(spec)
    labels = np.asarray(kinds)
    same = labels[:, None] == labels[None, :]
    wording = TfidfEmbedder().embed(texts)
    minilm = MiniLMEmbedder()
    space = minilm.embed(texts)  # [√½ meaning | √½ n-grams]: the model is loaded once, for both
    vectors = {"meaning": space[:, :minilm.dimensions] * np.sqrt(2), "wording": wording, "minilm": space}
    far = (wording @ wording.T) < 1.0 - TEXT_DISTANCE["tfidf"]
    upper = np.triu(np.ones_like(same, dtype=bool), 1)
    out: dict[str, Any] = {"corpus": spec, "units": len(texts), "kinds": len(set(kinds)),
                           "far_pairs": int((far & upper).sum()),
                           "chance": round(float(same[far & upper].mean()), 3)}
    for name in SPACES:
        v = vectors[name]
        out[name] = separation(v @ v.T, same, far, upper)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", type=corpus_spec,
                        default=[f"{v}:{seed}{long}" for long in ("", ":long") for v in ("tune", "heldout")
                                 for seed in (1, 2, 3)],
                        help="agent-transcript corpora, as variant:seed[:long]")
    args = parser.parse_args()
    corpora = []
    for spec in args.corpus:
        corpora.append(corpus_separation(spec))
        print(f"{spec}: done", file=sys.stderr, flush=True)
    rows = [[c["corpus"], c["units"], c["far_pairs"], f"{c['chance']:.3f}",
             *(f"{c[s]['auc_far']:.3f}" for s in SPACES), *(f"{c[s]['nn_far']:.3f}" for s in SPACES)]
            for c in corpora]
    summary: dict[str, Any] = {}
    for name in sorted({corpus_set(c["corpus"]) for c in corpora}):
        part = [c for c in corpora if corpus_set(c["corpus"]) == name]
        summary[name] = {"corpora": len(part), "chance": round(sum(c["chance"] for c in part) / len(part), 3)}
        for space in SPACES:
            summary[name][space] = {k: round(sum(c[space][k] for c in part) / len(part), 3)
                                       for k in ("auc", "auc_far", "nn_far")}
        rows.append([f"mean {name}", "", "", f"{summary[name]['chance']:.3f}",
                     *(f"{summary[name][s]['auc_far']:.3f}" for s in SPACES),
                     *(f"{summary[name][s]['nn_far']:.3f}" for s in SPACES)])
    print(table(rows, ["corpus", "units", "far pairs", "chance", *(f"AUC far {s}" for s in SPACES),
                       *(f"nn far {s}" for s in SPACES)]))
    path = write_result("text_separation", {"corpora": corpora, "summary": summary})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
