"""breastai: breast and tumor masks, DICOM-SEG and a T-stage report from breast DCE-MRI.

Research use only, not a medical device.

The public API is imported lazily so that ``import breastai`` (and ``breastai --help``) stays fast:
SimpleITK, pydicom, ONNX Runtime and OpenVINO load only when a function that needs them is first
used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

RESEARCH_NOTICE = "Research use only, not a medical device."

_LAZY = {
    "load_study": "breastai.io",
    "segment_study": "breastai.pipeline",
    "measure_lesions": "breastai.report",
    "Study": "breastai.study",
    "Phase": "breastai.study",
    "errors": "breastai.errors",
}

__all__ = ["RESEARCH_NOTICE", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'breastai' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if name == "errors" else getattr(mod, name)
