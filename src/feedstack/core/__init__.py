"""Core contracts: errors, the requirements spec, the event schema and the clock.

Nothing here imports anything else of feedstack.
"""
