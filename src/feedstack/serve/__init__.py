"""feedstack.serve."""
