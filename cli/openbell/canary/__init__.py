"""Canary rollouts: the state machine, the gates and judge, the controller and its persisted state."""
