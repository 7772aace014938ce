"""The capacity and cost planner: measured or assumed quantities in (each with its unit and
source), capacity, cost against the budget, the bottleneck, serving patterns and an autoscaled day
out, as data. Pure: no storage, no I/O."""
