"""Deprecated alias of `effnet.nn.lean` (the memory-lean training ops), kept for one release.

The old name read as "the EfficientNet layer". Every name still resolves here, with a
DeprecationWarning; import from `effnet.nn.lean` instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from effnet.nn import lean as _lean


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(_lean, name)  # AttributeError for names lean lacks, as a real module would
    warnings.warn(f"effnet.nn.efficient is deprecated: import {name} from effnet.nn.lean", DeprecationWarning, stacklevel=2)
    return value


def __dir__() -> list[str]:
    return dir(_lean)
