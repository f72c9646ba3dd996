"""Caller tokens -> model spans -> pieces, and the ragged alignment of pieces back to tokens."""

from tokvec_server.alignment.align import DocPlan, Specials, plan_docs

__all__ = ["DocPlan", "Specials", "plan_docs"]
