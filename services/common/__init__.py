"""What every Python service of the platform shares: its HTTP face (health, readiness, metrics) and its lifecycle."""
