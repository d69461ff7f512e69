"""okplan's stage-level benchmark suite: workloads on okplan and its peers, per-stage breakdowns,
optimizer on/off, and component micro-benchmarks. Run ``python -m benchmarks --help``."""
