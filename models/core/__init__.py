"""Pure statistics and fitting: no MLflow, no figures (pyproject import contracts)."""
