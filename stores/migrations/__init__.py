"""Alembic migrations of the review store (stores/reviews.py runs them when it opens a store)."""
