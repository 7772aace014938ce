"""feedstack.monitor."""
