"""SLO specs: the model and its loaders, burn-rate maths, rule generation, and evaluation -> Verdict."""
