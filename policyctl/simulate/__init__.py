"""The swarm simulator: agents in a declared world with hidden faults, producing exported-log events."""

from __future__ import annotations

from policyctl.simulate.deciders import Decider, GatewayDecider, GatewayError, PipelineDecider
from policyctl.simulate.run import (
    Planned,
    Summary,
    run_to_files,
    simulate,
    traffic,
    truth_path,
)
from policyctl.simulate.world import (
    World,
    describe_fault,
    load_world,
    parse_duration,
    parse_time,
    parse_world,
    shipped_worlds,
    world_schema,
)

__all__ = ["Decider", "GatewayDecider", "GatewayError", "PipelineDecider", "Planned", "Summary", "World",
           "describe_fault", "load_world", "parse_duration", "parse_time", "parse_world", "run_to_files",
           "shipped_worlds", "simulate", "traffic", "truth_path", "world_schema"]
