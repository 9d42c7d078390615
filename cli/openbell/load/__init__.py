"""Load: k6 market-open profiles run as a subprocess, thresholds derived from the SLO specs, the result as
the shared Verdict; and k6-operator TestRuns for distributed runs on the cluster."""
