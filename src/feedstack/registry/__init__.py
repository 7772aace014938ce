"""feedstack.registry."""
