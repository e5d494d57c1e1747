"""The MLflow edge: tracking and registry, packaging and loading of model versions."""
