"""A labelled corpus of multi-agent run failures written like transcripts: deterministic, seeded, made up here.

    python bench/corpora/agent_transcripts.py --seed 1 --variant tune -o events.jsonl

Each run is one system's conversation (ChatDev-, MetaGPT-, AG2-, Magentic-One- and
OpenHands-like crews): model messages, tool calls and tool results, several agents
with their system's role names. The events are the failing steps, labelled with the
failure kind they show (`<out>.labels.jsonl`: id, kind). Most kinds are failures of the
models themselves (a plan step repeated, an API invented, a tool result misread, the
task ended early, a role overstepped, a teammate ignored, a constraint forgotten); they
happen in every system, at every step type, spoken by any role, so no input field
separates them and only the text does. Two kinds have a field that decides them, as
tool failures do (`web_search` throttling: tool and status; missing files mostly come
back as tool results). Fields shared across kinds explain nothing: the system, the
benchmark, the model, `count(agents)` = 1 on every event, the run id. Words shared across
kinds explain nothing either: each run is about a task (`TOPICS`), and its functions,
files, packages, constraints and remarks about the work are the task's, whatever fails.

Two variants with disjoint wording templates: `tune` (what the clustering may be tuned
on) and `heldout` (other paraphrases, other preambles; measure on it, never tune on it).
Numbers, ids, paths and names vary in both. Nothing is copied from any dataset.

`--long` wraps every model message in one to three sentences of talk before and after
(`TALK`, disjoint per variant, and the task's notes), as a real turn restates the plan and
reports progress around the sentence that fails; the events, fields and labels are the
same as without it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (template, is it tool output) per kind and variant; `{…}` slots are filled per event
KINDS: dict[str, dict[str, list[tuple[str, bool]]]] = {
    "step-repetition": {
        "tune": [
            ("[I will|Let me|I'll] [search for|look up|grep for] the definition of `{func}` [again|once more] [to be sure|just in case|to double check].", False),
            ("[Let me run|Running|I'll execute] `{cmd}` [once more|again], [same as|just like] the last {n} attempts.", False),
            ("[Re-reading|Reading|Opening] {path} [from the top|from the beginning] [again|once more], as I did in the [previous|last] step.", False),
            ("[Calling|Invoking|Running] {tool} again with the [same|identical] arguments as [before|last time].", False),
            ("[Trying|Attempting|Using] the [exact|very] same approach [again|one more time]: {cmd}.", False),
            ("[Once again|Again] I'll [open|inspect|check] {path} and [look for|search for] `{func}`.", False),
        ],
        "heldout": [
            ("[Repeating|Redoing] the [previous|last] action: {cmd} (attempt {n}).", False),
            ("Same query as the last turn, searching for \"{query}\" one more time.", False),
            ("I keep getting the same [result|output], so I'll [just do it again|try it again]: open {path}.", False),
            ("This is iteration {n} of checking `{func}`; going through it again.", False),
            ("Going back to issue the identical {tool} call I already made.", False),
            ("Let me [redo|repeat] that step: re-running {cmd} [without changes|unchanged].", False),
        ],
    },
    "hallucinated-api": {
        "tune": [
            ("We can [simply|just] call `{pkg}.{fake}()`, which [does this for us|takes care of it|handles that].", False),
            ("AttributeError: module '{pkg}' has no attribute '{fake}'", True),
            ("The `{fake}` [helper|function|method] in {pkg} (added in version {ver}) [handles this case|covers this] automatically.", False),
            ("ImportError: cannot import name '{fake}' from '{pkg}' ({site}/{pkg}/__init__.py)", True),
            ("According to the {pkg} docs, `{fake}(strict=True)` returns the merged result.", False),
            ("[I'll use|Let me use|Using] {pkg}'s built-in `{fake}` [function|helper] to [finish this|complete the task].", False),
        ],
        "heldout": [
            ("{pkg} ships a `{fake}` method for exactly this, so no custom code is needed.", False),
            ("NameError: name '{fake}' is not defined", True),
            ("Per the official documentation, `{pkg}.{fake}` was introduced in {ver} for this purpose.", False),
            ("ModuleNotFoundError: No module named '{pkg}.{fake}'", True),
            ("There is a convenient `{fake}` utility in {pkg}; I'm relying on it here.", False),
            ("Use the standard `{fake}` call from {pkg} and the rest follows.", False),
        ],
    },
    "tool-arguments-invalid": {
        "tune": [
            ("ValidationError: 1 validation error for {Tool}Input\n{param}\n  field required (type=value_error.missing)", True),
            ("TypeError: {func}() missing 1 required positional argument: '{param}'", True),
            ("Invalid arguments for tool `{tool}`: expected integer for '{param}', got string", True),
            ("Tool call rejected: unknown parameter '{param}' for {tool}", True),
            ("TypeError: {func}() got an unexpected keyword argument '{param}'", True),
            ("Error parsing tool arguments: Expecting ',' delimiter: line 1 column {n} (char {n2})", True),
        ],
        "heldout": [
            ("{tool}: argument '{param}' is required but was not provided", True),
            ("Function call failed: '{param}' must be of type number, received \"{word}\"", True),
            ("Schema mismatch in call to {tool}: property '{param}' is not allowed", True),
            ("The tool arguments could not be decoded as JSON (unterminated string at position {n})", True),
            ("{func}() takes {n} positional arguments but {n2} were given", True),
            ("Bad request to {tool}: missing field `{param}`", True),
        ],
    },
    "misread-tool-output": {
        "tune": [
            ("Output shows `{k} failed, {m} passed`; the tests passed, so the fix is done.", False),
            ("The command [exited|returned] with code {code}, which means it [succeeded|worked]. [Moving on|Continuing].", False),
            ("Build output says 'error: {err}' but that's just a warning; the build is fine.", False),
            ("Since the listing is empty, the migration must have created all {m} tables.", False),
            ("The [response|reply] was HTTP {http}, so the record was [saved|stored] successfully.", False),
            ("The tool printed a [stack trace|traceback], but the result [is correct|looks right], [continuing|moving on].", False),
        ],
        "heldout": [
            ("{k} of the tests failed but the suite looks green overall; marking it as passing.", False),
            ("Exit status {code}: success. Proceeding to the next step.", False),
            ("I see a traceback in the output, but it looks like the script worked.", False),
            ("The API answered {http} Internal Server Error, which I take as confirmation the update went through.", False),
            ("No output from the tool means the data was written correctly.", False),
            ("The linter reported {k} errors; those can be ignored, the code is right.", False),
        ],
    },
    "premature-termination": {
        "tune": [
            ("TERMINATE", False),
            ("I believe the task is complete. TERMINATE", False),
            ("All [requirements|features] are implemented; [ending|closing] the session now.", False),
            ("The work is [finished|complete|done], no further [steps|changes] are needed.", False),
            ("Task complete. Stopping here.", False),
            ("We're done: marking the task as [finished|complete] [before testing|without running the tests].", False),
        ],
        "heldout": [
            ("That should be everything; I'm wrapping up the [conversation|session].", False),
            ("Final answer submitted, closing the task.", False),
            ("Nothing left to do here, so I'll stop.", False),
            ("<END_OF_TASK> The job is finished.", False),
            ("Concluding now; the remaining items can be skipped.", False),
            ("I consider this done and am signing off.", False),
        ],
    },
    "role-violation": {
        "tune": [
            ("As the reviewer I went ahead and [rewrote|changed|edited] {path} myself instead of [leaving comments|commenting].", False),
            ("[I'll take over|I'm taking over] the {other}'s [job|task] and [implement|write] `{func}` directly.", False),
            ("Skipping the hand-off to the {other}; I'm writing the code for this part myself.", False),
            ("Even though I'm the {role}, I just merged the change without asking for approval.", False),
            ("I [decided|settled] the design on my own rather than [waiting for|asking] the {other}.", False),
            ("Doing the tester's work too: I've written and run the tests for `{func}`.", False),
        ],
        "heldout": [
            ("Not my role, but I changed {path} directly rather than reporting it to the {other}.", False),
            ("I'm acting as the {other} now and pushing my own [implementation|code].", False),
            ("The {other} is responsible for this, but I already did it myself.", False),
            ("Instead of reviewing, I replaced the submitted `{func}` with my own version.", False),
            ("I approved and deployed the release myself, bypassing the {other}.", False),
            ("Taking on the architect's responsibilities as well: here is my new module layout.", False),
        ],
    },
    "ignored-teammate": {
        "tune": [
            ("[Proceeding|Continuing|Going ahead] with my original [approach|plan], [disregarding|ignoring] the {other}'s suggestion to use {lib}.", False),
            ("I did not apply the feedback from the {other}; keeping the previous version of `{func}`.", False),
            ("The {other} asked for {lib}, but I'll continue as planned.", False),
            ("Ignoring the note from the {other} about {path}; it doesn't change anything.", False),
            ("I'll keep my [implementation|version] even though the {other} pointed out a [bug|problem] in it.", False),
            ("No need to [follow|take] the {other}'s [recommendation|advice] here.", False),
        ],
        "heldout": [
            ("The {other} raised a [concern|question] about `{func}`; I'm moving forward without addressing it.", False),
            ("Overriding the {other}'s review comments and leaving {path} as it is.", False),
            ("I saw the {other}'s reply asking to switch to {lib} and chose not to.", False),
            ("Whatever the {other} said, my version stays.", False),
            ("Continuing without waiting for the {other}'s answer to my question.", False),
            ("The {other}'s correction is noted but not applied.", False),
        ],
    },
    "file-not-found": {
        "tune": [
            ("FileNotFoundError: [Errno 2] No such file or directory: '{path}'", True),
            ("cat: {path}: No such file or directory", True),
            ("error: pathspec '{path}' did not match any file(s) known to git", True),
            ("open {path}: no such file or directory", True),
            ("Could not read {path}: the file does not exist", True),
            ("python: can't open file '{workdir}/{path}': [Errno 2] No such file or directory", True),
        ],
        "heldout": [
            ("ls: cannot access '{path}': No such file or directory", True),
            ("ENOENT: no such file or directory, open '{workdir}/{path}'", True),
            ("The path {path} was not found in the workspace.", True),
            ("fatal: '{path}' does not exist in the working tree", True),
            ("read failed: {path} is missing", True),
            ("IOError: unable to locate {path}", True),
        ],
    },
    "forgotten-constraint": {
        "tune": [
            ("[Sorry|My apologies], I forgot the requirement that {constraint}; I'll [redo|fix] it.", False),
            ("I lost track of the [earlier|original] instruction: {constraint}.", False),
            ("My last answer ignored that {constraint}.", False),
            ("Oops, the spec said {constraint}, and my output does not respect that.", False),
            ("I [overlooked|missed] the user's constraint ({constraint}) when [writing|changing] `{func}`.", False),
            ("That draft breaks the rule that {constraint}.", False),
        ],
        "heldout": [
            ("Going back over the brief, I see that {constraint}, and my version misses it.", False),
            ("The output violates the original requirement: {constraint}.", False),
            ("I had dropped the condition that {constraint} somewhere along the way.", False),
            ("Apologies, {constraint} was in the [task|brief] and I didn't [honour|follow] it.", False),
            ("Re-reading the instructions: {constraint}. The current code doesn't do this.", False),
            ("I didn't keep in mind that {constraint}.", False),
        ],
    },
    "search-rate-limited": {
        "tune": [
            ("HTTP 429 Too Many Requests from {host}; retry after {n}s", True),
            ("Rate limit reached for web_search: {n} requests per minute", True),
            ("search backend throttled the request (quota exceeded for key ending {hex})", True),
            ("web_search timed out after {n} seconds waiting for a rate-limit slot", True),
        ],
        "heldout": [
            ("429: slow down, too many search queries from this client", True),
            ("Search quota exhausted for today ({n}/{n} calls used)", True),
            ("The search API is rate limiting us; request to {host} was rejected", True),
            ("Request throttled by {host}, backing off for {n} seconds", True),
        ],
    },
}
WEIGHTS = {"step-repetition": 14, "hallucinated-api": 12, "tool-arguments-invalid": 12, "misread-tool-output": 11,
           "premature-termination": 10, "role-violation": 8, "ignored-teammate": 8, "file-not-found": 12,
           "forgotten-constraint": 8, "search-rate-limited": 5}

# what a model says around the failing sentence (irrelevant to its kind), per variant
PREAMBLES = {"tune": ["", "", "", "Thought: ", "Okay. ", "[{role}] ", "Step {step}: "],
             "heldout": ["", "", "", "Observation: ", "Alright, ", "({role}) ", "Turn {step}: "]}
SUFFIXES = {"tune": ["", "", "", " Next, I'll update the docs.", " Let me know if anything else is needed."],
            "heldout": ["", "", "", " Then I will clean up the branch.", " Waiting for the next instruction."]}

# Talk around the failing statement, for `long` corpora: in real runs a model's turn is a
# paragraph that restates the plan, reports progress and remarks on the work, and the
# sentence that shows the failure is one of several. The same talk comes with every kind.
TALK = {"tune": ["I'll start by looking at how the modules fit together.", "The existing tests cover the main paths.",
                 "Here is the current state of the implementation.",
                 "We should keep the interface unchanged for callers.",
                 "The previous step updated the configuration file.", "I reviewed the function signatures in the module.",
                 "This part of the code was written by another agent earlier.",
                 "Let me summarise what has been done so far.",
                 "The requirements mention performance but not memory.",
                 "I checked the documentation for the relevant section."],
        "heldout": ["Quick recap of where we are before the next change.", "Most of the groundwork is already in place.",
                    "As discussed earlier, the public functions keep their names.",
                    "Nothing in the build configuration needed to change.",
                    "I went through the open comments on the last revision.",
                    "Performance looks acceptable on the sample input.",
                    "There are a few edge cases worth keeping in mind.",
                    "For context, the team split the work into three parts.",
                    "The logs from the previous attempt are attached above.",
                    "I'd like to keep this change small and easy to review."]}

SYSTEMS = {
    "ChatDev": ["CEO", "CTO", "Programmer", "Code Reviewer", "Software Test Engineer"],
    "MetaGPT": ["ProductManager", "Architect", "ProjectManager", "Engineer", "QaEngineer"],
    "AG2": ["assistant", "user_proxy", "critic", "planner"],
    "Magentic-One": ["Orchestrator", "WebSurfer", "FileSurfer", "Coder", "ComputerTerminal"],
    "OpenHands": ["CodeActAgent", "BrowsingAgent", "planner", "verifier"],
}
BENCHMARKS = ["ProgramDev", "GAIA", "SWE-bench-lite", "MMLU-hard", "GSM-Plus"]
MODELS = ["gpt-4o-2024-08-06", "claude-3-5-sonnet", "qwen2.5-72b-instruct", "llama-3.1-70b"]
TOOLS = ["python", "shell", "read_file", "write_file", "git", "browser", "web_search"]
# What a run is about. A run's names (its functions, files, packages, the constraints of
# its brief, what it searches for) come from its task, whatever fails in it: in real runs
# the vocabulary of the task is in every failing step, so a word shared by two steps says
# they are about one task, not that they fail alike. Every topic appears with every kind.
TOPICS: dict[str, dict[str, list[str]]] = {
    "snake game": {
        "funcs": ["draw_snake", "move_head", "check_collision", "spawn_food", "render_board"],
        "names": ["snake", "board", "game", "food", "main"],
        "pkgs": ["pygame", "numpy", "curses"],
        "fakes": ["auto_collide", "smooth_move", "wrap_edges", "draw_grid_fast"],
        "libs": ["a deque for the body", "pygame sprites", "the existing helper"],
        "constraints": ["the board size is fixed at 20 by 20", "the game must run at 10 frames per second",
                        "only standard library modules may be used"],
        "queries": ["python snake game collision", "pygame window resize event", "curses arrow keys"],
        "notes": ["The snake now grows by one segment per apple.", "Food spawns on a free cell of the board.",
                  "The score is drawn in the top-left corner."],
    },
    "ledger": {
        "funcs": ["update_ledger", "apply_discount", "compute_total", "round_cents", "post_entry"],
        "names": ["ledger", "invoice", "prices", "accounts", "models"],
        "pkgs": ["sqlalchemy", "pandas", "decimal"],
        "fakes": ["auto_balance", "reconcile_all", "safe_round", "merge_entries"],
        "libs": ["the ORM", "Decimal arithmetic", "a dictionary lookup"],
        "constraints": ["prices are given in euros, not dollars", "answers are rounded to two decimals",
                        "every entry must balance to zero"],
        "queries": ["sqlalchemy session rollback", "python decimal rounding half up", "double entry bookkeeping"],
        "notes": ["Each invoice line now carries its VAT rate.", "The ledger keeps debits and credits apart.",
                  "Totals are computed per account and month."],
    },
    "data pipeline": {
        "funcs": ["load_dataset", "merge_frames", "clean_columns", "infer_types", "write_parquet"],
        "names": ["dataset", "loader", "schema", "pipeline", "utils"],
        "pkgs": ["pandas", "numpy", "scipy", "pyarrow"],
        "fakes": ["smart_join", "infer_schema", "auto_clean", "read_any"],
        "libs": ["dataclasses", "a regex", "pyarrow's reader"],
        "constraints": ["the output must be valid JSON", "missing values are dropped, not filled",
                        "the function must stay under 50 lines"],
        "queries": ["pandas merge on two keys", "numpy argsort descending", "parquet schema evolution"],
        "notes": ["The loader reads the CSV in chunks of 10,000 rows.", "Dates are parsed into UTC timestamps.",
                  "The cleaned frame has one row per customer."],
    },
    "web service": {
        "funcs": ["parse_config", "handle_upload", "validate_token", "render_page", "fetch_prices"],
        "names": ["config", "views", "routes", "auth", "app"],
        "pkgs": ["flask", "requests", "jinja2"],
        "fakes": ["auto_retry", "fast_parse", "secure_upload", "fix_encoding"],
        "libs": ["asyncio", "the existing middleware", "a set"],
        "constraints": ["the API must not be called more than once per item", "the UI text has to be in French",
                        "uploads are limited to 5 MB"],
        "queries": ["flask upload size limit", "requests retry on 503", "jinja2 escape html"],
        "notes": ["The upload endpoint now returns a JSON body.", "Tokens expire after fifteen minutes.",
                  "The login page is served at /auth/login."],
    },
    "report generator": {
        "funcs": ["plot_scores", "tokenize_input", "compute_score", "normalize_path", "build_report"],
        "names": ["report", "plots", "scores", "tokens", "views"],
        "pkgs": ["matplotlib", "scipy", "jinja2"],
        "fakes": ["quick_plot", "auto_legend", "deep_validate", "safe_render"],
        "libs": ["a template engine", "the plotting helper", "a regex"],
        "constraints": ["figures are saved as PNG at 300 dpi", "the report must fit on two pages",
                        "answers are rounded to two decimals"],
        "queries": ["matplotlib legend outside plot", "scipy ttest independent samples", "markdown table to pdf"],
        "notes": ["The summary table lists the mean score per group.", "Each chart gets a caption under it.",
                  "The report opens with the three main findings."],
    },
}
DIRS = ["src", "app", "lib/core", "tests", "scripts", "pkg/utils", "docs"]
EXTS = ["py", "json", "yaml", "md", "txt", "csv"]
CMDS = ["pytest -q", "python main.py", "npm test", "make build", "pip install -r requirements.txt", "ls -la src",
        "python -m unittest", "git status"]
PARAMS = ["path", "query", "max_results", "timeout", "content", "filename", "limit", "branch"]
HOSTS = ["api.search.example", "serp.example.net", "search-proxy.internal", "duck.example.org"]
ERRORS = ["undefined reference to `main'", "cannot find module 'react'", "unresolved import crate::board",
          "type mismatch in assignment"]
NOTE_SHARE = 0.3  # how often a model message also says something about the task itself


@dataclass(frozen=True)
class Corpus:
    events: list[dict[str, Any]]
    labels: dict[str, str]  # event id -> failure kind


def generate(seed: int = 1, variant: str = "tune", runs: int = 70, long: bool = False) -> Corpus:
    """The failing steps of `runs` runs, and each one's failure kind; the same seed gives the same corpus.

    `long` wraps every model message in one to three sentences of talk (`TALK`, the task's
    notes) before it and after it; the events, their fields and labels are those of the
    corpus without it.
    """
    if variant not in PREAMBLES:
        raise ValueError(f"variant {variant!r}: one of {', '.join(PREAMBLES)}")
    rng = random.Random(f"{variant}:{seed}")
    talk = random.Random(f"{variant}:{seed}:talk")  # its own stream: the corpus stays the same beneath it
    kinds = sorted(KINDS)
    events: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    minute = 0
    for _ in range(runs):
        system = rng.choice(sorted(SYSTEMS))
        roles = SYSTEMS[system]
        run_id = f"{system.lower()}-{rng.randrange(16 ** 6):06x}"
        benchmark, model = rng.choice(BENCHMARKS), rng.choice(MODELS)
        topic = TOPICS[rng.choice(sorted(TOPICS))]
        # a run shows one to three failure kinds, some of them more than once (a loop, a habit)
        own = rng.sample(kinds, rng.choice([1, 2, 2, 3]))
        weights = [WEIGHTS[k] for k in own]
        minute += rng.randrange(20, 240)
        for step in range(1, rng.randrange(3, 10)):
            kind = rng.choices(own, weights)[0]
            text, is_tool = rng.choice(KINDS[kind][variant])
            role = rng.choices(roles, [3 if i == kinds.index(kind) % len(roles) else 1 for i in range(len(roles))])[0]
            other = rng.choice([x for x in roles if x != role])
            tool = "web_search" if kind == "search-rate-limited" else rng.choice(TOOLS)
            slots = _slots(rng, topic, role, other, tool, step)
            message = _vary(rng, text).format(**slots)
            if not is_tool:
                if rng.random() < NOTE_SHARE:
                    note = rng.choice(topic["notes"])
                    message = f"{note} {message}" if rng.random() < 0.5 else f"{message} {note}"
                message = rng.choice(PREAMBLES[variant]).format(**slots) + message + rng.choice(SUFFIXES[variant])
                if long:
                    before = " ".join(talk.sample(TALK[variant], talk.randrange(1, 4)))
                    after = " ".join(talk.sample(TALK[variant] + topic["notes"], talk.randrange(1, 4)))
                    message = f"{before}\n\n{message}\n\n{after}"
            if is_tool:
                action: dict[str, Any] = {"type": "tool_result", "tool": tool}
            elif rng.random() < 0.3:
                action = {"type": "tool_call", "tool": tool}
            else:
                action = {"type": "message"}
            action["model"] = model
            minute += rng.randrange(1, 6)
            eid = f"{run_id}:{step}"
            events.append({
                "id": eid, "ts": f"2026-03-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:"
                                  f"{rng.randrange(60):02d}Z",
                "input": {"kind": "action", "agents": [{"id": f"{role.lower().replace(' ', '_')}@{run_id}",
                                                        "role": role}],
                          "action": action,
                          "context": {"system": system, "benchmark": benchmark, "run_id": run_id, "step": step}},
                "outcome": {"status": "timeout" if kind == "search-rate-limited" else "error", "message": message},
            })
            labels[eid] = kind
    return Corpus(events, labels)


def _vary(rng: random.Random, text: str) -> str:
    """One wording of a template: each `[a|b|c]` becomes one of its alternatives."""
    return re.sub(r"\[([^\]]*\|[^\]]*)\]", lambda m: rng.choice(m.group(1).split("|")), text)


def _slots(rng: random.Random, topic: dict[str, list[str]], role: str, other: str, tool: str,
           step: int) -> dict[str, Any]:
    n = rng.randrange(2, 60)
    return {
        "func": rng.choice(topic["funcs"]), "pkg": rng.choice(topic["pkgs"]), "fake": rng.choice(topic["fakes"]),
        "path": f"{rng.choice(DIRS)}/{rng.choice(topic['names'])}{rng.choice(['', '_v2', '_old', str(rng.randrange(9))])}."
                f"{rng.choice(EXTS)}",
        "workdir": rng.choice(["/workspace", "/home/user/project", "/tmp/run", "/app"]),
        "site": f"/usr/lib/python3.{rng.randrange(9, 13)}/site-packages",
        "cmd": rng.choice(CMDS), "query": rng.choice(topic["queries"]), "tool": tool, "Tool": tool.title().replace("_", ""),
        "param": rng.choice(PARAMS), "word": rng.choice(["ten", "all", "none", "max"]), "lib": rng.choice(topic["libs"]),
        "constraint": rng.choice(topic["constraints"]), "host": rng.choice(HOSTS), "hex": f"{rng.randrange(16 ** 4):04x}",
        "err": rng.choice(ERRORS), "n": n, "n2": n + 1 + rng.randrange(40), "k": rng.randrange(1, 9),
        "m": rng.randrange(3, 40), "code": rng.choice([1, 2, 127, 137, 255]), "http": rng.choice([400, 404, 500, 503]),
        "ver": f"{rng.randrange(1, 3)}.{rng.randrange(0, 12)}", "role": role, "other": other, "step": step,
    }


def write(corpus: Corpus, out: Path) -> Path:
    """events.jsonl at `out`, and its labels beside it (`<stem>.labels.jsonl`); returns the labels' path."""
    out.write_text("".join(json.dumps(e) + "\n" for e in corpus.events))
    labels = out.with_name(out.name.replace(".jsonl", "") + ".labels.jsonl")
    labels.write_text("".join(json.dumps({"id": i, "kind": k}) + "\n" for i, k in corpus.labels.items()))
    return labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", choices=sorted(PREAMBLES), default="tune")
    parser.add_argument("--runs", type=int, default=70)
    parser.add_argument("--long", action="store_true", help="wrap each model message in talk about the work")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    corpus = generate(args.seed, args.variant, args.runs, long=args.long)
    labels = write(corpus, args.output)
    print(f"{len(corpus.events)} events of {len(set(corpus.labels.values()))} failure kinds: {args.output}, {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
