"""The torch model layer: a spec built into a network, and what runs it.

- `model`, `nn/`: `build(spec)` -> `nn.Module`, its blocks and layers.
- `factory`, `weights`: `create_model`, other libraries' weight layouts, safe loading.
- `predict`, `export`: classifying image files; ONNX and TorchScript export, the preprocessing and class names in the file.
- `fast/`, `allocator`: the inference fast path; the CPU allocator settings of memory-lean training.

Imported module by module (this package imports nothing), so naming it loads no torch.
"""
