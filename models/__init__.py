"""The model, in four rooms; each may import only the rooms below it (pyproject's import contracts).

- `core`: the pure statistics and fitting: split, calibration, threshold, metrics, gates, fitting,
  tuning, monitor, audit, the monitor reference, config, the model bundle and its code provenance,
  the labelled data. No MLflow, no figures: every result is a value a test can check.
- `mlflow_edge`: everything that talks to MLflow about a model: the store and its lock, the alias,
  the pyfunc wrapper and the code logged with a version, the reference's artifact, the calendar
  check against a version, the pseudonyms of logged persons, the input example.
- `reporting`: what a reviewer reads: figures, logged review metrics, the model card, comparisons.
- `runs`: the commands' logging shells (train, recertify, evaluate, monitor, audit, promotion,
  score): each gathers inputs, calls the core, and records the outcome through the edge.
"""
