"""One module per schema revision of the review store, oldest first."""
