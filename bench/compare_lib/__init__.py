"""The pieces of bench/compare.py, one job per module.

machine      what the machine is (CPU, BLAS, git commit) and how busy it is
tasks        what is timed: the tasks, the shapes, their useful FLOPs
contestants  gru_fast and each peer as a callable, and the equal-work check
timing       interleaved (round-robin) sampling of the contestants
measure      one shape: build, check and time every contestant
memory       bytes gru_forward allocates beyond its outputs (tracemalloc)
targets      the targets of issue 5, judged on the results
report       the text tables, the Markdown report
plot         the PNG chart

compare.py is the driver; run it as ``python bench/compare.py`` (bench/ on the path).
"""
