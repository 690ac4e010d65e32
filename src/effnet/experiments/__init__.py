"""Experiments: many trainings run, stored and compared.

The skeleton every experiment shares sits here: `trials` (`Experiment`, `run_trials`), `trial_store` (`TrialStore`,
the one resumable store), `saved_options` (a run's options, refusing a changed resume), `proxy` (the proxy
evaluator) and `ranking`. The drivers on it are the subpackages: `study/` (the α/β/γ grid search and the scaling
study), `search/` (the architecture search), `selftrain/` (Noisy Student) and `bench/` (speed and memory).
"""
