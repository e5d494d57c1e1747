"""What a reviewer reads: review metrics and figures logged on runs, the model card, comparisons."""
