"""Chaos experiments gated on SLO burn: openbell's Chaos Toolkit extension (probes, actions, the SLO safeguard
control), the experiment catalogue, and the runner behind `openbell chaos`.

Experiments call the extension as `{"type": "python", "module": "openbell.chaos.probes", "func": ...}`; the
modules import nothing heavy at import time, so `chaos validate` stays quick.
"""
