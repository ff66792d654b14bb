# METADATA
# title: Only database administrators drop tables
# description: >-
#   An example rule (policyctl init): a tool call that drops a table is denied unless
#   an agent with role dba makes it. Replace it with your own rules; the bot drafts
#   more under policies/rules/ from your agents' failure logs.
# custom:
#   mode: enforce
package agentgov.rules.drop_table

import rego.v1

decisions contains {
	"id": "deny_drop_table_without_dba",
	"action": "deny",
	"params": {},
	"message": "only an agent with role dba may drop a table",
} if {
	input.kind == "action"
	input.action.type == "tool_call"
	input.action.tool == "drop_table"
	not any_dba
}

any_dba if {
	some agent in input.agents
	agent.role == "dba"
}
