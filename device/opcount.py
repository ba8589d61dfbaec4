"""Multiply-accumulates of one invoke of a TFLite model, read from the interpreter itself.

No TensorFlow: the op list comes from the interpreter's ``_get_ops_details()`` (op name,
input and output tensor indices; ai-edge-litert and tflite-runtime both have it) and the
shapes from ``get_tensor_details()``. Counted, per op (``out_*`` from the output tensor,
``k_*`` and ``in_c`` from the filter tensor, input 1):

- ``CONV_2D``: ``out_h * out_w * out_c * k_h * k_w * in_c`` (filter ``[out_c, k_h, k_w,
  in_c]``; ``in_c`` is per group, so grouped convolutions count right too);
- ``DEPTHWISE_CONV_2D``: ``out_h * out_w * out_c * k_h * k_w`` (filter ``[1, k_h, k_w,
  out_c]``);
- ``FULLY_CONNECTED``: ``batch * out_units * in_units`` (weights ``[out_units,
  in_units]``; ``batch`` is the product of the output's leading dimensions).

Every other op counts 0 MACs (the input rescale's MUL and ADD, residual ADDs, clips,
LOGISTIC, RESHAPE, CONCATENATION, QUANTIZE, ai-edge-litert's DELEGATE node: element-wise
work or data movement, not multiply-accumulates); :func:`macs_by_op` lists them with their
0 so a reader sees what was left out. Convolution bias adds are not counted either. These
are the rules ``smilebot_tools.model.describe`` applies to the Keras layers (batch norm
folded into the convolutions), and the two counts agree exactly on the shipped model.

Not the job of this module: timing (``smilebot.bench``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

COUNTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def macs(interpreter: Any) -> int:
    """Multiply-accumulates of one invoke of an allocated ``interpreter`` (see the module)."""
    return sum(macs_by_op(interpreter).values())


def macs_by_op(interpreter: Any) -> dict[str, int]:
    """``{op name: MACs}`` summed over the model's ops of each name; uncounted names map to 0."""
    details = interpreter.get_tensor_details()
    shapes = {int(d["index"]): tuple(int(n) for n in d["shape"]) for d in details}
    totals: dict[str, int] = {}
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        totals[name] = totals.get(name, 0) + _op_macs(name, op, shapes)
    return totals


def _op_macs(name: str, op: dict, shapes: dict[int, tuple[int, ...]]) -> int:
    if name not in COUNTED_OPS:
        return 0
    out = shapes[int(op["outputs"][0])]
    weights = shapes[int(op["inputs"][1])]
    if name == "FULLY_CONNECTED":
        out_units, in_units = weights
        return int(np.prod(out[:-1], dtype=np.int64)) * out_units * in_units
    _, out_h, out_w, out_c = out
    _, k_h, k_w, in_c = weights
    if name == "DEPTHWISE_CONV_2D":
        return out_h * out_w * out_c * k_h * k_w
    return out_h * out_w * out_c * k_h * k_w * in_c
