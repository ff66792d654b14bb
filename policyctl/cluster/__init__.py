"""Failure log clustering: template mining, embedding, clustering, fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from policyctl.ingest.base import Mapping, ReadSummary
from policyctl.model.cluster import ClusterReport


def cluster_logs(paths: list[Path], *, fmt: str = "auto", embedder: str = "minilm", min_size: int = 5,
                 include_all: bool = False, strict: bool = False, progress: Callable[[int], None] | None = None,
                 mapping: Mapping | None = None,
                 summary: ReadSummary | None = None) -> tuple[ClusterReport, list[tuple[float, float, int, int]]]:
    """Read, mine, embed and cluster logs; return the clusters (clusters.json's record) and the map's points."""
    from policyctl.cluster.core import cluster_records
    from policyctl.cluster.ingest import IngestStats, read_logs
    from policyctl.cluster.report import to_report

    require_clustering(embedder)
    stats = IngestStats()
    records = read_logs(paths, fmt=fmt, strict=strict, stats=stats, progress=progress, mapping=mapping,
                        summary=summary)
    result = cluster_records(records, embedder=_Lazy(embedder), min_size=min_size, include_all=include_all,
                             stats=stats)
    return to_report(result), result.unit_coords


class _Lazy:
    """Load the embedder only if there is something to embed (an empty log needs no model)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._impl: Any = None

    def embed(self, texts: list[str]) -> Any:
        from policyctl.cluster.embed import get_embedder

        if self._impl is None:
            self._impl = get_embedder(self.name)
        return self._impl.embed(texts)


def require_clustering(embedder: str) -> None:
    """A clear error, before any log is read, when the extra that clustering needs is not installed."""
    import importlib.util

    from policyctl.errors import UsageError

    wanted = ["numpy", "sklearn"] + (["sentence_transformers"] if embedder == "minilm" else [])
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        extra = "cluster" if "sentence_transformers" in missing else "tfidf"
        raise UsageError(f"clustering with --embedder {embedder} needs {', '.join(missing)}, which are not installed: "
                         f"pip install 'policyctl[{extra}]'" + ("" if extra == "tfidf" else
                                                                " (or --embedder tfidf with policyctl[tfidf])"))
