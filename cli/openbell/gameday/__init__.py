"""The gameday: one command that runs load, canary and chaos together, gated on SLO burn, with one report."""
