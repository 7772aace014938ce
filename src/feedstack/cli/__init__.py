"""The command line: a thin composition root. Nothing imports it."""
