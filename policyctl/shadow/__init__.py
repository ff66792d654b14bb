"""Shadow replay: records through a base and a candidate revision, and what changes."""

from policyctl.model.shadow import ShadowReport
from policyctl.shadow.render import FORMATS, render
from policyctl.shadow.replay import CandidateError, replay

__all__ = ["FORMATS", "CandidateError", "ShadowReport", "render", "replay"]
