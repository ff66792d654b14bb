# METADATA
# title: Arbitrate deadlocks over restricted ports
# description: >-
#   Agents that contend for a restricted port (SSH, the Docker socket, the
#   database) deadlock when each holds a lock the other waits for. Settle the
#   conflict up front: the highest priority goes first, ties broken by agent id.
# custom:
#   cluster: seed-port-deadlock
#   mode: enforce
package agentgov.rules.restricted_port_deadlock

import rego.v1

# An agent's place in line is the number of agents that go before it.
# Ranked with < and > only: rego-cpp's sort/min/max order numbers as strings.
before(b, a) if object.get(b, "priority", 0) > object.get(a, "priority", 0)

before(b, a) if {
	object.get(b, "priority", 0) == object.get(a, "priority", 0)
	b.id < a.id
}

place[a.id] := count([b | some b in input.agents; before(b, a)]) if some a in input.agents

order := [a.id | some i in numbers.range(0, count(input.agents) - 1); some a in input.agents; place[a.id] == i]

decisions contains {
	"id": "arbitrate_restricted_port",
	"action": "arbitrate",
	"params": {"winner": order[0], "order": order},
	"message": sprintf("port %v is restricted: agents take it in priority order", [input.resource.port]),
} if {
	input.kind == "conflict"
	input.resource.kind == "port"
	input.resource.port in data.agentgov.net.restricted_ports
	count(input.agents) >= 2
}
