"""Alembic migrations of the review store (serving/reviews.py runs them when it opens a store)."""
