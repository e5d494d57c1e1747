"""commuter-badge: who is a regular cross-city commuter into Beijing, with a certified FPR.

The package root is the bottom layer: `settings` (every setting, read once), `errors` (the one
exception base), `atomic` (the one way to write a file). Above it, one way only:
features -> models -> serving -> cli; `simulate` (synthetic worlds) sits beside models and is used by
the command line, tests and benchmarks only. `make lint` checks the graph (import-linter).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("commuter-badge")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
