# METADATA
# title: Route parquet off SMB
# description: >-
#   Parquet files written over SMB crash the writing agent
#   (smb2 STATUS_INVALID_PARAMETER on large sequential writes). Route parquet
#   shares to the protocol that carries them without failures.
# custom:
#   cluster: seed-parquet-smb
#   mode: enforce
package agentgov.rules.parquet_smb

import rego.v1

decisions contains {
	"id": "route_parquet_off_smb",
	"action": "route",
	"params": {"action": {"protocol": alternative}},
	"message": sprintf("parquet over %s crashes agents; use %s", [input.action.protocol, alternative]),
} if {
	input.kind == "action"
	input.action.type == "file_share"
	input.action.file_type == "parquet"
	some alternative in [data.agentgov.file_share.routes.parquet[input.action.protocol]]
}
