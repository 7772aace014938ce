"""The design report: the spec, the latest measurements and the plan, as sections (Problem,
Metrics, Data, Model, Serve, Scale, Monitor, Cost) rendered to report.md and report.html with their
figures."""
