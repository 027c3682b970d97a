"""Which axis of a constant weight is the output channel, and which one is summed over.

Per-channel quantization (scales along the output channel), TensorRT's Q/DQ rules and 2:4
sparsity (along the reduction axis) all ask this of the same ONNX ops; it is answered once.
"""

from __future__ import annotations

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _int_attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)


def weight_axis(node, input_index: int, rank: int, *, reduction: bool = False) -> int | None:
    """Output-channel axis (or, with ``reduction``, the summed axis) of the weight at ``input_index``.

    Args:
        node: An ONNX ``NodeProto`` (Conv, ConvTranspose, Gemm or MatMul).
        input_index: Which input of ``node`` holds the weight (MatMul and Gemm may take it as
            the first operand).
        rank: The weight's rank.
        reduction: Return the axis the node sums over instead of the output-channel axis.

    Returns:
        The axis, or None for any other op.
    """
    op = node.op_type
    if op == "Conv":
        out, red = 0, 1  # [O, I/g, k...]
    elif op == "ConvTranspose":
        out, red = 1, 0  # [I, O/g, k...]
    elif op == "Gemm":
        if input_index == 1:
            out, red = (0, 1) if _int_attr(node, "transB") else (1, 0)
        else:  # A = [M, K] (or [K, M] with transA): rows are outputs
            out, red = (1, 0) if _int_attr(node, "transA") else (0, 1)
    elif op == "MatMul":
        # B = [..., K, N]: outputs on the last axis; A = [..., M, K] as the weight: on rank-2.
        out, red = (rank - 1, rank - 2) if input_index == 1 else (rank - 2, rank - 1)
    else:
        return None
    return red if reduction else out
