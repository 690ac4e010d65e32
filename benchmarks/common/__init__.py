"""What the benchmark scripts share: `run_log` (their runs in the project's one resumable store) and `plain_loops` (the
plain PyTorch training loops they compare effnet with). The scripts put `benchmarks/` on sys.path (running a script there
does) and import `common.run_log` / `common.plain_loops`."""
