"""One ONNX file whose output is the mean of several models' probabilities (a model ensemble).

The members must share their inputs and their one output, ``probability`` (the I/O interface of
:mod:`breastai.training.export`). Each member's graph is copied under its own name prefix, all
members read the same inputs, and the file's ``probability`` is the mean of theirs: to the
pipeline the ensemble is one model (one file, one sha256, one card), so nothing downstream
changes. Used by the issue-17 ensemble experiment (bench/RESULTS.md).

Research use only, not a medical device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from breastai.errors import OutputExistsError, ParameterError
from breastai.io.atomic import atomic_file

__all__ = ["OUTPUT", "mean_probability_onnx"]

#: The output every member and the ensemble have.
OUTPUT = "probability"


def _io_signature(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(i.name for i in model.graph.input), tuple(o.name for o in model.graph.output)


def mean_probability_onnx(members: Sequence[Path], out: Path, *, force: bool = False) -> Path:
    """Write ``out``: an ONNX model whose ``probability`` is the mean of the members'.

    Parameters
    ----------
    members:
        Two or more ONNX files with the same input names and the one output ``probability``.
    out:
        The file to write (atomically).
    force:
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ParameterError
        Fewer than two members, or members whose inputs, output or opset differ.
    OutputExistsError
        ``out`` exists and ``force`` is false.
    """
    import onnx
    from onnx import compose, helper

    if len(members) < 2:
        raise ParameterError(f"an ensemble needs two or more models, got {len(members)}.")
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass force=True to replace it.")
    models = [onnx.load(str(p)) for p in members]
    inputs = _io_signature(models[0])[0]
    for path, model in zip(members, models, strict=True):
        signature = _io_signature(model)
        if signature != (inputs, (OUTPUT,)):
            raise ParameterError(
                f"ensemble members need the inputs {list(inputs)} and the one output "
                f"{OUTPUT!r}; {path} has inputs {list(signature[0])} and outputs "
                f"{list(signature[1])}."
            )
        if list(model.opset_import) != list(models[0].opset_import):
            raise ParameterError(f"{path} has another opset than {members[0]}; re-export both.")
    graph = helper.make_graph(
        [], "ensemble", list(models[0].graph.input), list(models[0].graph.output)
    )
    member_outputs = []
    for k, model in enumerate(models):
        prefix = f"m{k}_"
        prefixed = compose.add_prefix(model, prefix)
        for node in prefixed.graph.node:  # every member reads the ensemble's own inputs
            for j, name in enumerate(node.input):
                if name.startswith(prefix) and name[len(prefix) :] in inputs:
                    node.input[j] = name[len(prefix) :]
        graph.node.extend(prefixed.graph.node)
        graph.initializer.extend(prefixed.graph.initializer)
        member_outputs.append(prefix + OUTPUT)
    graph.initializer.append(
        helper.make_tensor("ensemble_weight", onnx.TensorProto.FLOAT, [], [1.0 / len(models)])
    )
    graph.node.append(helper.make_node("Sum", member_outputs, ["ensemble_sum"]))
    graph.node.append(helper.make_node("Mul", ["ensemble_sum", "ensemble_weight"], [OUTPUT]))
    ensemble = helper.make_model(
        graph, opset_imports=list(models[0].opset_import), producer_name="breastai-ensemble"
    )
    ensemble.ir_version = models[0].ir_version
    onnx.checker.check_model(ensemble)
    with atomic_file(out, force=force) as tmp:
        onnx.save(ensemble, str(tmp))
    return out
