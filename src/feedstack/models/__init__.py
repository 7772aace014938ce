"""Models: candidate sources (``candidates/``), the re-ranker (``rank/``), interactions, metrics.

Pure: numpy/scipy in, numpy out; no storage, no I/O besides the artifact folders they save.
"""

import os

# OpenMP threads (LightGBM, implicit, numba) spin while they wait by default. On 2 cores shared
# with any other busy process that spinning starves the work: LightGBM training took 30.4 s
# instead of 7.9 s with one competing process (50 rounds, 1M rows, measured). libgomp reads this
# once, when the first OpenMP library loads, which is after this package is imported; a value
# the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
