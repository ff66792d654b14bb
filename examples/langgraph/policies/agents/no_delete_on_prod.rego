# METADATA
# title: No deletes on production shares
# description: >-
#   Agents clean up their own scratch space, never a production share: a
#   delete there cannot be undone by the agent that made it.
# custom:
#   mode: enforce
package agentgov.rules.no_delete_on_prod

import rego.v1

decisions contains {
	"id": "deny_delete_on_prod",
	"action": "deny",
	"params": {},
	"message": sprintf("share %s is production: agents may not delete files there", [input.resource.id]),
} if {
	input.kind == "action"
	input.action.type == "file_delete"
	input.resource.kind == "share"
	startswith(input.resource.id, "prod")
}
