"""feedstack.plan."""
