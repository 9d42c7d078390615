"""openbell: the reliability toolkit for real-time trading platforms.

Every risky action (a canary step, a chaos fault, a load ramp) is gated on SLO error-budget burn.
"""

__version__ = "0.1.0"
