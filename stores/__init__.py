"""The stores below the service and the command line: the decision store `/badge` reads
(decisions.py, with `publish`, the one publishing step), the append-only review store
(reviews.py) and its Alembic migrations (migrations/). Batch scoring, `reviews export`, `audit`
and the service all use them through this package; nothing here imports serving/ or cli/."""
