"""The agents' side of the gateway: typed sync and async clients, the guard, outcome reporting, mcp-proxy."""

from policyctl.client.aio import AsyncGatewayClient, AsyncGuard
from policyctl.client.errors import ClientError, Denied, GatewayUnavailable, Unauthorized
from policyctl.client.guard import GuardState
from policyctl.client.retry import RetryPolicy
from policyctl.client.sync import GatewayClient, Guard
from policyctl.client.types import (
    ActionSpec,
    AgentRef,
    Input,
    Outcome,
    action_input,
    deep_merge,
    describe_denial,
    routed_input,
)
from policyctl.client.wire import CLIENT_ERROR_SOURCE
from policyctl.model import Decision, Reason

__all__ = ["CLIENT_ERROR_SOURCE", "ActionSpec", "AgentRef", "AsyncGatewayClient", "AsyncGuard", "ClientError",
           "Decision", "Denied", "GatewayClient", "GatewayUnavailable", "Guard", "GuardState", "Input", "Outcome",
           "Reason", "RetryPolicy", "Unauthorized", "action_input", "deep_merge", "describe_denial",
           "routed_input"]
