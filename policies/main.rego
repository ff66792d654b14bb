# METADATA
# title: Decision entrypoint
# description: >-
#   Gathers the candidates of every enforced rule module and picks one:
#   deny over route over arbitrate over allow, ties by rule id then module,
#   so the result never depends on load order. With no candidate an action is
#   allowed and a conflict goes back to the agents' own negotiation. Shadow
#   modules are evaluated beside it and never decide.
package agentgov.main

import rego.v1

# Lower rank wins.
rank := {"deny": 0, "route": 1, "arbitrate": 2, "allow": 3}

modules := object.get(data.agentgov.meta, "modules", {})

# The rules document, evaluated once. Looking up data.agentgov.rules[name] per module
# instead re-evaluates the whole document for each name in some engines (quadratic).
rules := data.agentgov.rules

candidates contains c if {
	some name, m in modules
	some d in rules[name].decisions
	c := {
		"id": object.get(d, "id", name),
		"action": object.get(d, "action", null),
		"params": object.get(d, "params", {}),
		"message": object.get(d, "message", ""),
		"module": name,
		"file": m.file,
		"mode": m.mode,
	}
}

invalid := [msg | some c in candidates; c.mode == "enforce"; not rank[c.action]; msg := sprintf("%s (%s): action %v is not one of deny, route, arbitrate, allow", [c.id, c.file, c.action])]

ordered := sort([[rank[c.action], c.id, c.module, c] | some c in candidates; c.mode == "enforce"; rank[c.action]])

shadow := [{"rule": c.id, "action": c.action, "params": c.params, "module": c.module} | some c in candidates; c.mode == "shadow"]

fired := sort([c.id | some c in candidates; c.mode == "enforce"])

default_action := "allow" if {
	input.kind == "action"
} else := "negotiate" if {
	input.kind == "conflict"
}

# One chain, so each input evaluates the checks once: invalid candidates, else the winner,
# else the default.
decision := {"error": {"code": "invalid_candidate", "message": concat("; ", invalid)}} if {
	count(invalid) > 0
} else := {
	"action": winner.action,
	"params": winner.params,
	"reasons": [{"rule": winner.id, "file": winner.file, "message": winner.message}],
	"source": "policy",
	"fired": fired,
	"shadow": shadow,
} if {
	count(ordered) > 0
	winner := ordered[0][3]
} else := {
	"action": default_action,
	"params": {},
	"reasons": [],
	"source": "default",
	"fired": [],
	"shadow": shadow,
}
