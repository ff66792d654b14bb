"""policyctl init in any git repository, from a wheel installed in a fresh virtual environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT, git

from policyctl.cli.main import main


def test_init_writes_a_repository_that_checks_and_never_overwrites(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "policies-here"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert main(["init", str(repo), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    for path in ("policies/main.rego", "policyctl.toml", ".pre-commit-config.yaml", ".github/workflows/ci.yml",
                 ".github/workflows/bot.yml", "shadow_fixtures/examples/drop_table.jsonl"):
        assert path in written and (repo / path).is_file()
    assert main(["check", "--repo", str(repo)]) == 0
    # a second run refuses and writes nothing; --list says what exists
    before = (repo / "policyctl.toml").read_bytes()
    (repo / "policyctl.toml").write_text("# mine\n")
    assert main(["init", str(repo)]) == 1
    assert "exist already" in capsys.readouterr().err and (repo / "policyctl.toml").read_text() == "# mine\n"
    assert main(["init", str(repo), "--list"]) == 1
    assert "exists policyctl.toml" in capsys.readouterr().out
    del before


def test_init_refuses_a_directory_that_is_not_a_git_repository(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 1
    assert "git" in capsys.readouterr().err.lower()
    assert not (tmp_path / "policies").exists()


@pytest.mark.parametrize("workflow", ["ci.yml", "bot.yml"])
def test_the_scaffolded_workflows_pass_real_linters(tmp_path: Path, workflow: str) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert main(["init", str(repo)]) == 0
    path = repo / ".github/workflows" / workflow
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([str(bin_dir / "zizmor"), "--offline", "--no-progress", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_wheel_alone_sets_up_a_policy_repository_outside_this_project(tmp_path: Path) -> None:
    """Build the wheel, `pip install` it with the tfidf extra into a new virtual environment (its
    dependencies from pip's configured index, nothing from this environment or source tree), then
    init, check, pytest and pre-commit in a new repository, and the demo, all outside this project."""
    dist = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(PROJECT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(dist)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(dist.glob("policyctl-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # what a user installs: the wheel with the extra `policyctl demo --embedder tfidf` needs, and the
    # two tools the scaffolded CI and hooks run (pytest for shadow_fixtures/, pre-commit)
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[tfidf]", "pytest", "pre-commit"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    repo = tmp_path / "elsewhere"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env.pop("PYTHONPATH", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    where = run(str(py), "-c", "import policyctl, sklearn, click; print(policyctl.__file__, sklearn.__file__, "
                               "click.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout  # not this tree or .venv
    for args in (["policyctl", "init"], ["policyctl", "check"], [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                                 "shadow_fixtures"]):
        done = run(*args)
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert "3 passed" in done.stdout
    git(repo, "add", "-A")
    done = run(str(py), "-m", "pre_commit", "run", "--all-files")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "policyctl check" in done.stdout and "Passed" in done.stdout
    # the whole loop from the installed package alone (its seed policy set and worlds), with the
    # fewest events at which the demo's own verdict (failures down by 90% or more) holds
    out = tmp_path / "demo"
    done = run("policyctl", "demo", "--events", "1000", "--embedder", "tfidf", "-o", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads((out / "demo.json").read_text())
    assert result["pull_requests"] and result["reduction_pct"] >= 90
    assert "policyctl pr merge" in done.stdout and "without a restart" in done.stdout
