"""feedstack.report."""
