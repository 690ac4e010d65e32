"""Scaling experiments: the α/β/γ grid search (step 1 of compound scaling) and the paper's scaling study.

- `effnet.experiments.study.grid`: enumerate (α, β, γ) under α·β²·γ² ≈ 2, scale a baseline with φ = 1,
  train every candidate for a fixed proxy budget and rank them (`effnet grid-search`).
- `effnet.experiments.study.scaling_study`: width, depth and resolution scaled alone (paper Fig. 3), width
  at several (depth, resolution) settings (Fig. 4) and single-dimension against compound scaling
  at matched MACs (Table 3), over several seeds with confidence intervals (`effnet study scaling`).
- `effnet.experiments.study.results`: what a study produces (preset, points, result), shared by the driver and the report.
- `effnet.experiments.study.report`: the Markdown report and PNG plots.

Both train every network with the proxy evaluator `effnet.experiments.proxy.evaluate_candidate` (one short training
run) and run on the experiment skeleton `effnet.experiments.trials.Experiment`.
"""

from effnet.experiments.proxy import evaluate_candidate
from effnet.experiments.study.grid import GridCandidate, GridResult, grid_candidates, grid_search
from effnet.experiments.study.stats import mean_ci, paired_difference

__all__ = ["GridCandidate", "GridResult", "evaluate_candidate", "grid_candidates", "grid_search", "mean_ci", "paired_difference"]
