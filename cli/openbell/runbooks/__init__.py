"""On-call runbooks: an index of runbooks/ by alert name, and lookup."""
