"""Training, export and checkpoint import (needs the ``[train]`` extra: torch, onnx).

Nothing outside this package imports torch; inference runs the exported ONNX files.
"""
