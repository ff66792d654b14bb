"""Failures no field explains, grouped by their text; explanations that need a contrast; inputs no embedder may crash on."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PROJECT

from policyctl.cli.main import main
from policyctl.cluster import cluster_logs
from policyctl.cluster.embed import (
    MAX_NGRAM_DIMS,
    MiniLMEmbedder,
    get_embedder,
    ngram_vectors,
    plain_words,
    sentence_weights,
    sentences,
)
from policyctl.cluster.report import dumps, render_html, render_table
from policyctl.model.cluster import ClusterReport
from policyctl.model.schema import schema_errors

sys.path.insert(0, str(PROJECT / "bench"))
from corpora.agent_transcripts import generate, write  # noqa: E402


def event(i: int, message: str | None, *, status: str = "error", run: str = "r1", **fields: Any) -> dict[str, Any]:
    action = {"type": fields.pop("type", "message"), **({"tool": fields.pop("tool")} if "tool" in fields else {})}
    outcome: dict[str, Any] = {"status": status}
    if message is not None:
        outcome["message"] = message
    return {"id": f"e{i}", "ts": f"2026-03-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "input": {"kind": "action", "agents": [{"id": f"a-{run}", "role": fields.pop("role", "assistant")}],
                      "action": action, "context": {"run_id": run, "system": "AG2", **fields}},
            "outcome": outcome}


def jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    corpus = generate(seed=3, variant="heldout")
    log = tmp_path_factory.mktemp("transcripts") / "events.jsonl"
    write(corpus, log)
    return log, corpus.labels


# --------------------------------------------------------------------------- no input crashes an embedder


EDGE_TEXTS = [[], [""], ["   "], ["only one message"], ["same words"] * 6, ["", "", ""], ["x", "é", "<*> <*>"]]


def check_vectors(texts: list[str], vectors: Any) -> None:
    assert len(vectors) == len(texts)
    if len(texts):
        assert np.isfinite(vectors).all()
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("texts", EDGE_TEXTS, ids=["none", "empty", "blank", "one", "identical", "all-empty", "tiny"])
def test_tfidf_embeds_any_input(texts: list[str]) -> None:
    check_vectors(texts, get_embedder("tfidf").embed(texts))


def test_many_templates_keep_the_wording_space_bounded_and_its_cosines_near_exact() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(3, 10)))
             for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(1500)]
    exact = normalize(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
                      .fit_transform(texts)).toarray()
    assert exact.shape[1] > 3 * MAX_NGRAM_DIMS  # what unbounded rows would be
    vectors = ngram_vectors(texts)
    check_vectors(texts, vectors)
    assert vectors.shape[1] == MAX_NGRAM_DIMS and vectors.dtype == np.float32
    error = np.abs(vectors @ vectors.T - exact @ exact.T)
    assert error.mean() < 0.02 and error.max() < 0.1
    # below the bound nothing is projected: a small input's cosines are exact
    small = ngram_vectors(texts[:50])
    few = normalize(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
                    .fit_transform(texts[:50])).toarray()
    assert np.allclose(small @ small.T, few @ few.T, atol=1e-5)


@pytest.mark.slow
def test_minilm_embeds_any_input() -> None:
    embedder = get_embedder("minilm")
    for texts in EDGE_TEXTS:
        check_vectors(texts, embedder.embed(texts))


# --------------------------------------------------------------------------- what the sentence model reads


def test_the_sentence_model_reads_what_was_said_not_what_it_was_said_about() -> None:
    # names are the task's (its functions, files, packages); the words around them are the failure
    assert plain_words("We can just call `pandas.smart_join()`, which does it for us.") == \
        "We can just call it, which does it for us."
    assert plain_words("python: can't open file '/app/src/main.py': [Errno 2] No such file") == \
        "python: can't open file it: [Errno 2] No such file"
    assert plain_words("Opening lib/core/board_v2.json, e.g. the CTO's getBoard helper") == \
        "Opening it, e.g. the CTO's it helper"
    assert plain_words("TERMINATE") == "TERMINATE" and plain_words("") == ""
    assert sentences("Thought: I forgot the rule. Waiting for the next instruction.") == \
        ["Thought:", "I forgot the rule.", "Waiting for the next instruction."]
    assert sentences("") == sentences("   ") == ["(no message)"]
    # a page-long answer is read as far as the model's window reaches, as a short one is
    page = sentences(" ".join(f"Sentence number {i} of a long answer." for i in range(2000)))
    assert 10 < len(page) <= 24 and page[0] == "Sentence number 0 of a long answer."
    assert sentences("x" * 100_000) == ["x" * 1200]


def test_a_sentence_said_in_many_messages_weighs_less_than_one_said_once() -> None:
    stock = "Waiting for the next instruction."
    split = [[f"failure number {i}.", stock] for i in range(9)] + [[stock]]
    weights = sentence_weights(split)
    assert all(w[0] > 5 * w[1] for w in weights[:9])  # the stock phrase barely counts beside what failed
    assert weights[9][0] > 0  # a message with nothing but common sentences still has a direction


def talk_wrapped_failures() -> tuple[list[str], int, int, int]:
    """Forty turns of two failures, each in four sentences of talk about the work that every kind shares.

    Returns the turns and three of them: a forgotten constraint, the same failure in other
    talk, and the other failure in the first one's talk.
    """
    talk = ["Here is the current state of the implementation.", "The existing tests cover the main paths.",
            "We should keep the interface unchanged for callers.", "I reviewed the function signatures.",
            "The previous step updated the configuration file.", "Let me summarise what has been done so far.",
            "This part was written by another agent earlier.", "The requirements mention speed but not memory.",
            "I checked the documentation for that section.", "Most of the groundwork is already in place."]
    subjects = ["prices are in euros", "answers are rounded to two decimals", "the output must be valid JSON",
                "the board is twenty by twenty", "uploads are limited to five megabytes",
                "only the standard library may be used", "missing values are dropped", "the report fits on two pages",
                "the UI text is in French", "every entry must balance"]
    turns = []
    for i in range(40):
        said = [talk[(i + k) % 10] for k in range(4)]
        failure = (f"Sorry, I forgot that {subjects[i // 2 % 10]}." if i % 2 == 0 else
                   f"Since {subjects[i // 2 % 10]}, I am marking the task complete without running the tests.")
        turns.append(" ".join(said[:2] + [failure] + said[2:]))
    # turn 0: forgot, talk 0-3; turn 6: forgot, talk 6-9; turn 11: ended early, talk 1-4; three subjects
    return turns, 0, 6, 11


@pytest.mark.parametrize("space", ["tfidf", pytest.param("minilm", marks=pytest.mark.slow)])
def test_talk_every_kind_shares_does_not_outweigh_the_sentence_that_fails(space: str) -> None:
    # in a real turn the failing sentence is one of several; the rest (plans, progress,
    # remarks on the work) come with every kind of failure, each in a good share of turns
    turns, forgot, forgot_elsewhere, ended = talk_wrapped_failures()
    embedder = get_embedder(space)
    vectors = embedder.meaning(turns) if isinstance(embedder, MiniLMEmbedder) else embedder.embed(turns)
    same_failure_other_talk = float(vectors[forgot] @ vectors[forgot_elsewhere])
    other_failure_same_talk = float(vectors[forgot] @ vectors[ended])
    assert same_failure_other_talk > other_failure_same_talk + 0.05


@pytest.mark.slow
def test_a_stock_phrase_does_not_pull_different_failures_together() -> None:
    # two different failures, each followed by the phrase the agent ends every message with
    stock = " Let me know if anything else is needed."
    a, b = "I forgot the requirement that prices are in euros.", "The job is finished, closing the session now."
    fillers = [f"Step {w} is done." for w in ("one", "two", "three", "four", "five", "six")]
    embedder = get_embedder("minilm")
    assert isinstance(embedder, MiniLMEmbedder)
    bare = embedder.meaning([a, b, *fillers])
    said = embedder.meaning([a + stock, b + stock, *(f + stock for f in fillers)])
    # the phrase alone, averaged in, lifts the similarity of any two messages; weighed by how
    # often it is said, it leaves what the failures have in common where it was
    assert float(said[0] @ said[1]) < float(bare[0] @ bare[1]) + 0.05
    assert float(said[0] @ bare[0]) > 0.95
    # the wording half shares the phrase's letters, and still the two stay far from saying one thing
    both = embedder.embed([a + stock, b + stock, *(f + stock for f in fillers)])
    assert float(both[0] @ both[1]) < (1 - embedder.text_distance) / 2


@pytest.mark.slow
def test_the_default_space_tells_machine_written_errors_apart_and_keeps_paraphrases_close() -> None:
    missing = "FileNotFoundError: [Errno 2] No such file or directory: 'src/board.py'"
    also_missing = "cat: lib/ledger_v2.json: No such file or directory"
    others = ["TypeError: compute_total() missing 1 required positional argument: 'limit'",
              "ImportError: cannot import name 'smart_join' from 'pandas'"]
    done, also_done = "TERMINATE", "The work is finished, no further steps are needed."
    texts = [missing, also_missing, *others, done, also_done]
    minilm, tfidf = get_embedder("minilm").embed(texts), get_embedder("tfidf").embed(texts)
    # a missing file in two programs' words is nearer than another error in the first one's words
    # (0.42 against 0.30 and 0.34; on meaning alone 0.56 against 0.57 and 0.62)
    for other in (2, 3):
        assert float(minilm[0] @ minilm[1]) > float(minilm[0] @ minilm[other]) + 0.05
    # two ways of saying "finished" share no word: only the meaning half brings them together
    assert float(minilm[4] @ minilm[5]) > float(tfidf[4] @ tfidf[5]) + 0.1


@pytest.mark.parametrize("case", ["empty-file", "missing-messages", "empty-messages", "one-event", "identical"])
def test_no_input_crashes_the_clustering(tmp_path: Path, case: str) -> None:
    events = {
        "empty-file": [],
        "missing-messages": [event(i, None, run=f"r{i % 3}") for i in range(8)],
        "empty-messages": [event(i, "", run=f"r{i % 3}") for i in range(8)],
        "one-event": [event(0, "tool call failed: timeout")],
        "identical": [event(0, "tool call failed: timeout")] * 12,
    }[case]
    log = jsonl(tmp_path / "events.jsonl", events)
    if not events:
        assert main(["cluster", str(log), "--embedder", "tfidf", "--json"]) == 1  # nothing readable: an error, not a crash
        return
    doc, points = cluster_logs([log], embedder="tfidf")
    assert not schema_errors("clusters", doc.to_dict())
    assert sum(c.size for c in doc.clusters) == len(events)
    render_html(doc, points), render_table(doc)
    assert ClusterReport.from_dict(json.loads(dumps(doc))) == doc
    if case in ("missing-messages", "empty-messages", "identical"):
        # the same (lack of) text, no field that differs: one recurring failure, and nothing to draft from
        assert not doc.systemic and len(doc.text_clusters) == 1


@pytest.mark.slow
def test_minilm_clusters_identical_and_empty_events(tmp_path: Path) -> None:
    log = jsonl(tmp_path / "events.jsonl", [event(0, "tool call failed: timeout")] * 6 +
                [event(i, None, run=f"r{i}") for i in range(1, 7)])
    doc, _ = cluster_logs([log], embedder="minilm")
    assert sum(c.size for c in doc.clusters) == 12 and not doc.systemic


# --------------------------------------------------------------------------- explanations need contrast


def test_values_in_every_event_or_in_one_run_never_explain(tmp_path: Path) -> None:
    # one run's loop: 12 failures, all with the run's own task; other runs fail in other ways;
    # every event has one agent and the same system
    events = [event(i, f"agent repeated step {i}: calling search again", run="r-loop", task="snake game")
              for i in range(12)]
    events += [event(100 + i, f"plan {i} skipped the review", run=f"r{i % 6}", task=f"task {i % 6}")
               for i in range(30)]
    events += [event(200 + i, "done", status="ok", run=f"r{i % 6}", task=f"task {i % 6}") for i in range(40)]
    doc, _ = cluster_logs([jsonl(tmp_path / "events.jsonl", events)], embedder="tfidf")
    assert doc.contrast == "successes"
    offered = {d.field for c in doc.clusters for d in c.distinguishing}
    assert not offered & {"count(agents)", "context.system", "context.run_id", "context.task", "role"}, offered
    loop = next(c for c in doc.clusters if "e0" in c.members)
    assert not loop.systemic and loop.basis == "text" and loop.runs == 1


def test_input_without_successes_is_reported_and_compared_with_other_failures(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    events = [event(i, f"upload of part {i} failed: quota exceeded", tool="uploader", type="tool_result",
                    run=f"r{i % 7}") for i in range(20)]
    events += [event(100 + i, f"model answered in German although asked for English ({i})", run=f"r{i % 7}")
               for i in range(20)]
    events += [event(200 + i, f"step {i} not found in plan", run=f"r{i % 5}", tool=["search", "shell"][i % 2])
               for i in range(20)]
    log = jsonl(tmp_path / "events.jsonl", events)
    doc, points = cluster_logs([log], embedder="tfidf")
    assert doc.contrast == "other_failures" and doc.to_dict()["contrast"] == "other_failures"
    upload = next(c for c in doc.clusters if "e0" in c.members)
    # the uploader tool is this group's alone among the failures: a handle, measured against the other failures
    assert upload.systemic and upload.size == 20
    assert [(d.field, d.value) for d in upload.distinguishing if d.field == "action.tool"] == [("action.tool", "uploader")]
    assert all(d.field != "count(agents)" for c in doc.clusters for d in c.distinguishing)
    html = render_html(doc, points)
    assert "compared with the other failures" in html and "of other failures" in html
    assert main(["cluster", str(log), "--embedder", "tfidf"]) == 0
    assert "compared with the other failures" in capsys.readouterr().out


def test_a_step_type_two_failures_share_is_no_handle_for_either(tmp_path: Path) -> None:
    # only failures: 30 missing files and 20 bad arguments come back as tool results, 30 model
    # messages ignore a teammate, and web_search times out (its tool is also some bad arguments')
    tools = ["shell", "python", "read_file", "web_search"]
    events = [event(i, f"cat: src/part{i}.py: No such file or directory", type="tool_result",
                    tool=tools[i % 3], run=f"r{i % 7}") for i in range(30)]
    events += [event(100 + i, f"TypeError: load() missing 1 required positional argument: 'arg{i}'",
                     type="tool_result", tool=tools[i % 4], run=f"r{i % 6}") for i in range(20)]
    events += [event(200 + i, f"I'll keep my version even though the reviewer found bug {i} in it.",
                     run=f"r{i % 5}") for i in range(30)]
    events += [event(300 + i, f"web_search timed out after {10 + i} seconds waiting for a rate-limit slot",
                     type="tool_call", tool="web_search", status="timeout", run=f"r{i % 4}") for i in range(12)]
    doc, _ = cluster_logs([jsonl(tmp_path / "events.jsonl", events)], embedder="tfidf")
    assert doc.contrast == "other_failures"
    missing = next(c for c in doc.clusters if "e0" in c.members)
    # 30 of the 50 tool results: most of them, but the bad arguments are tool results throughout
    assert missing.size == 30 and missing.basis == "text" and not missing.systemic
    assert missing not in doc.systemic and not missing.distinguishing
    # a timeout is another failure than the errors that share its tool: its handle stands
    timeout = next(c for c in doc.clusters if "e300" in c.members)
    assert timeout.systemic and timeout.basis == "fields" and timeout.size == 12
    assert ("action.tool", "web_search") in {(d.field, d.value) for d in timeout.distinguishing}


def test_one_shared_value_does_not_merge_failures_whose_text_differs(tmp_path: Path) -> None:
    # two different failures of the deploy tool, and successes where deploy is rare: before, both got
    # the fingerprint "error, action.type=deploy" and became one cluster
    events = [event(i, f"disk quota exceeded on volume vol-{i}", type="deploy", run=f"r{i % 9}") for i in range(25)]
    events += [event(100 + i, f"TLS certificate for host web-{i} expired yesterday", type="deploy", run=f"r{i % 8}")
               for i in range(25)]
    events += [event(200 + i, "ok", status="ok", type=["deploy", "search", "shell", "git"][min(i % 40, 3)],
                     run=f"r{i % 9}") for i in range(200)]
    doc, _ = cluster_logs([jsonl(tmp_path / "events.jsonl", events)], embedder="tfidf")
    quota = next(c for c in doc.clusters if "e0" in c.members)
    cert = next(c for c in doc.clusters if "e100" in c.members)
    assert quota is not cert
    assert quota.size == 25 and cert.size == 25
    assert len({quota.fingerprint, cert.fingerprint}) == 2


# --------------------------------------------------------------------------- text clusters on agent transcripts


def test_transcript_failures_form_titled_text_clusters_the_bot_never_sees(transcripts: tuple[Path, dict[str, str]],
                                                                          tmp_path: Path) -> None:
    log, labels = transcripts
    out, page = tmp_path / "clusters.json", tmp_path / "report.html"
    assert main(["cluster", str(log), "--embedder", "tfidf", "-o", str(out), "--html", str(page)]) == 0
    doc = ClusterReport.from_dict(json.loads(out.read_text()))
    assert doc.contrast == "other_failures" and doc.totals.successes == 0
    text = doc.text_clusters
    assert len(text) >= 8 and doc.totals.text_clusters == len(text)
    assert doc.totals.text_events == sum(c.size for c in text)
    kinds, pure, mixed = set(), 0, []
    for c in text:
        assert not c.systemic and not c.policy_handle and c not in doc.systemic
        assert c.size >= 5 and c.title and c.terms and c.examples and c.runs and c.runs >= 1
        kind, n = Counter(labels[m] for m in c.members).most_common(1)[0]
        if n / c.size < 0.6:
            mixed.append(f"{c.title} mixes {Counter(labels[m] for m in c.members)}")
        kinds.add(kind)
        pure += n
    # a text cluster holds one failure kind; the task's words are in every kind's messages, so
    # now and then two kinds said about one task meet (one cluster in ten at most)
    assert pure >= 0.9 * doc.totals.text_events
    assert len(mixed) <= len(text) // 10, mixed
    assert len(kinds) >= 8  # and most failure kinds recur as text clusters of their own
    # no constant, no system, no run explains anything; the systemic ones (if any) have a real handle
    for c in doc.systemic:
        assert {d.field for d in c.distinguishing} <= {"action.tool", "action.type", "kind"}
    html = page.read_text()
    assert "Recurring failures without a policy handle" in html
    assert all(c.fingerprint in html for c in text)
