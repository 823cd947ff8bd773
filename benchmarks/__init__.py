"""`make bench`: speed and memory measured against the baseline a user would pick instead, in the same run
on the same data (benchmarks/RESULTS.md, results.json, plots/). Never timed tests: ratios, not seconds."""
