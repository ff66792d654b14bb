"""`policyctl init`: a policy repository anywhere, from the files this package ships.

The seed is this project's own policy set's entrypoint (policies/main.rego, shipped in
the wheel through policyctl/scaffold/seed), one example rule with fixtures, empty
overrides/ and shadow_fixtures/ folders, a policyctl.toml with every default written
out, a pre-commit configuration using policyctl's hooks, and CI and bot workflows
(actions pinned by commit, least permissions). Nothing that exists is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from policyctl.errors import PolicyctlError

__all__ = ["InitResult", "init_repository", "scaffold_files", "seed_root"]


class InitError(PolicyctlError):
    code = "init_refused"


def _template(name: str) -> str:
    return resources.files("policyctl.scaffold").joinpath(f"templates/{name}").read_text("utf-8")


def seed_root() -> Path:
    """This package's seed policy set (policies/, shadow_fixtures/, overrides/, policyctl.toml).

    In a source tree these are symlinks to the repository's own folders; in a wheel, copies.
    """
    return Path(str(resources.files("policyctl.scaffold").joinpath("seed")))


def scaffold_files() -> dict[str, str]:
    """Every file `policyctl init` writes, by path relative to the repository root."""
    from policyctl import __version__ as version
    from policyctl.model.config import DEFAULT_CONFIG_TEXT

    main_rego = (seed_root() / "policies" / "main.rego").read_text("utf-8")
    return {
        "policies/main.rego": main_rego,
        "policies/examples/drop_table.rego": _template("example_rule.rego"),
        "shadow_fixtures/examples/drop_table.jsonl": _template("example_fixtures.jsonl"),
        "shadow_fixtures/overrides/.gitkeep": "",
        "overrides/.gitkeep": "",
        "policyctl.toml": DEFAULT_CONFIG_TEXT,
        ".pre-commit-config.yaml": _template("pre-commit-config.yaml").format(version=version),
        ".github/workflows/ci.yml": _template("ci.yml").format(version=version),
        ".github/workflows/bot.yml": _template("bot.yml").format(version=version),
    }


@dataclass
class InitResult:
    root: Path
    written: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"root": str(self.root), "written": self.written, "existing": self.existing}


def init_repository(root: Path, *, dry_run: bool = False) -> InitResult:
    """Write the scaffold into the git repository at `root`; refuse (writing nothing) if any file exists."""
    from policyctl import repo as gitrepo

    root = root.resolve()
    if not root.is_dir():
        raise InitError(f"{root}: no such directory (create it and run `git init` there first)")
    gitrepo.git_dir(root)  # a RepoError naming the path when it is not a git repository
    files = scaffold_files()
    result = InitResult(root)
    result.existing = sorted(p for p in files if (root / p).exists())
    if dry_run:
        result.written = sorted(set(files) - set(result.existing))
        return result
    if result.existing:
        raise InitError(f"{root}: {len(result.existing)} of the files policyctl init writes exist already, so it "
                        f"writes none: {', '.join(result.existing)}. Move them away, or add what is missing by "
                        "hand (`policyctl init --list` prints every file).")
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        result.written.append(path)
    return result
