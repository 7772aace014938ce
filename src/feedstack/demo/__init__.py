"""The main job: everything that exists, end to end, on embedded defaults (``make demo``)."""
