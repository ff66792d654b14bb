"""Figures that layers which must not import each other all check: one definition, no imports.

The model validates an override's header, the sandbox compiles its script, and the CLI
offers `--priority` in its `--help`. The sandbox's worker never imports the model, and
`--help` must not load the model (jsonschema), so none of them may hold these figures.
"""

# Source: a script is a short emergency measure, not a program. The header is read outside the
# sandbox, by every gateway build and by `policyctl check` in pre-commit, so reading it must cost
# what a short script costs, whatever the file holds: the model applies this cap before any parse,
# and the sandbox refuses a longer script the same way.
MAX_OVERRIDE_BYTES = 64 * 1024

# Priorities only order the few overrides of an emergency; a small range stays exact in every
# encoding (JSON, Rego numbers, floats) and readable in the status.
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
