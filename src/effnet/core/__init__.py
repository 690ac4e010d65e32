"""The torch-free core: the architecture as data and the pure functions of it.

- `spec`: `NetSpec`, `StageSpec`, their validation and codecs (JSON, block strings).
- `parts`, `profile`, `scaling`: each block's weight layers, params and MACs, compound and single-dimension scaling.
- `zoo`, `preprocessing`: the named variants as spec + preprocessing + weight sources, `resolve_spec`.
- `images`: the one image reader of every path (PIL, imported on first use).

Nothing here imports torch or a module above it (tests/test_structure.py checks both), so `import effnet` and the
analytic tools start fast.
"""
