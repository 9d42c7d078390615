"""Where the platform runs: the sandbox (local processes) and Kubernetes (EKS)."""
