"""Typer commands: parse arguments, call a capability, render. No logic lives here."""
