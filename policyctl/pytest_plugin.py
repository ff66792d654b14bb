"""pytest plugin: every line of shadow_fixtures/**/*.jsonl is a test item named by its fixture id.

`pytest shadow_fixtures/` runs them against the working tree; `--policy-ref REF` runs the
fixtures and policies of a commit instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policyctl.decide import FixtureResult, Pipeline, build_revision, load_fixtures, run_fixture
from policyctl.errors import PolicyctlError
from policyctl.model.records import Fixture
from policyctl.repo import Snapshot, snapshot, worktree_snapshot

_CACHE: dict[tuple[str, str | None], tuple[Snapshot, Pipeline | str]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("policyctl", "policyctl shadow fixtures")
    group.addoption("--policy-ref", default=None, metavar="REF",
                    help="Run shadow fixtures against this commit's policies and fixtures (default: working tree).")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".jsonl" and "shadow_fixtures" in file_path.parts:
        return FixtureFile.from_parent(parent, path=file_path)
    return None


def _repo_root(path: Path) -> Path:
    parts = path.parts
    i = len(parts) - 1 - parts[::-1].index("shadow_fixtures")
    return Path(*parts[:i])


def _load(root: Path, ref: str | None) -> tuple[Snapshot, Pipeline | str]:
    key = (str(root), ref)
    if key not in _CACHE:
        try:
            snap = snapshot(root, ref) if ref else worktree_snapshot(root)
            _CACHE[key] = (snap, build_revision(snap, verify=False).pipeline)
        except PolicyctlError as exc:
            problems = getattr(exc, "problems", None)
            text = "\n".join(str(p) for p in problems) if problems else exc.message
            _CACHE[key] = (Snapshot(revision=ref, files={}), f"the policy set does not build:\n{text}")
    return _CACHE[key]


class FixtureFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        root = _repo_root(self.path)
        rel = self.path.relative_to(root).as_posix()
        snap, pipeline = _load(root, self.config.getoption("--policy-ref"))
        if isinstance(pipeline, str):
            raise self.CollectError(pipeline)
        if rel not in snap.files:
            return
        fixtures, problems = load_fixtures(snap, prefix=rel)
        for fixture in fixtures:
            yield FixtureItem.from_parent(self, name=fixture.id, fixture=fixture, pipeline=pipeline)
        for problem in problems:
            yield BrokenFixture.from_parent(self, name=f"line {problem.line}", problem=str(problem))


class FixtureFailed(Exception):
    def __init__(self, result: FixtureResult) -> None:
        super().__init__(result.fixture.id)
        self.result = result


class FixtureItem(pytest.Item):
    def __init__(self, *, fixture: Fixture, pipeline: Pipeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fixture = fixture
        self.pipeline = pipeline

    def runtest(self) -> None:
        result = run_fixture(self.pipeline, self.fixture)
        if not result.passed:
            raise FixtureFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if not isinstance(excinfo.value, FixtureFailed):
            return str(super().repr_failure(excinfo))
        r = excinfo.value.result
        d = r.decision
        fired = d.get("fired") or [x.get("rule") for x in d.get("reasons", [])]
        lines = [f"fixture {r.fixture.id} ({r.fixture.where}) failed:"]
        lines += [f"  {p}" for p in r.problems]
        lines += ["", "input:", _indent(r.fixture.input), "expected (subset of the decision):", _indent(r.fixture.expect),
                  "decision:", _indent({k: d.get(k) for k in ("action", "params", "source", "revision", "error") if k in d}),
                  f"rules that fired: {', '.join(str(x) for x in fired) if fired else 'none (default decision)'}"]
        for reason in d.get("reasons", []):
            lines.append(f"  {reason.get('rule')} ({reason.get('file')}): {reason.get('message')}")
        return "\n".join(lines)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(self.fixture.line - 1, 0), f"fixture {self.fixture.id}"


class BrokenFixture(pytest.Item):
    def __init__(self, *, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self) -> None:
        raise PolicyctlError(self.problem)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return f"invalid fixture: {self.problem}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


def _indent(value: Any) -> str:
    return "\n".join("    " + line for line in json.dumps(value, indent=2, sort_keys=True).splitlines())
