"""The failure region in a drafted module's METADATA (`custom.region`), written and replaced."""

from __future__ import annotations

import json

from policyctl.model.region import Region


def region_metadata(region: Region) -> list[str]:
    """METADATA lines for custom.region (JSON flow style, which is YAML): the failure region the rule
    answers, so every replay tells its in-region changes from collateral the same way."""
    if not region.tests:
        return []
    return ["#   region:"] + [f"#     - {json.dumps(t.to_dict(), sort_keys=True)}" for t in region.tests]


def with_region(module_text: str, region: Region) -> str:
    """A drafted module with its METADATA's custom.region set to `region` (replacing one it had)."""
    lines = module_text.split("\n")
    out: list[str] = []
    skipping = False
    for line in lines:
        if skipping:
            if line.startswith("#     - ") or line.startswith("#       "):
                continue
            skipping = False
        if line.strip() == "#   region:":
            skipping = True
            continue
        out.append(line)
        if line.rstrip() == "# custom:":
            out.extend(region_metadata(region))
    return "\n".join(out)


def with_drafter(module_text: str, drafter: str) -> str:
    """A drafted module whose METADATA says which drafter wrote it (custom.drafter), so `policyctl check`
    holds it to the vocabulary as a drafted rule, whatever the drafter itself wrote there."""
    lines = [line for line in module_text.split("\n") if not line.startswith("#   drafter:")]
    for i, line in enumerate(lines):
        if line.rstrip() == "# custom:":
            lines.insert(i + 1, f"#   drafter: {drafter}")
            break
    return "\n".join(lines)
