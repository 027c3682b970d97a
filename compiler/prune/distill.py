"""Knowledge-distillation loss for recovering accuracy after pruning (teacher = unpruned model)."""

from __future__ import annotations

from typing import Any

from edgec._deps import require
from edgec.errors import ConfigError


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any = None, *, T: float = 2.0,
                      alpha: float = 0.5, kind: str = "kl", ignore_index: int = -100) -> Any:
    """Hinton-style distillation loss, optionally mixed with the task loss on labels.

    ``kind="kl"`` (classifier logits, the last axis holds the classes)::

        soft = T^2 * KL(softmax(teacher / T) || softmax(student / T))   # mean over rows
        loss = alpha * soft + (1 - alpha) * cross_entropy(student, labels)   # labels given
        loss = soft                                                           # no labels

    ``kind="mse"`` or ``"cosine"`` (embeddings, regression outputs): ``soft`` is the mean
    squared error or ``1 - cosine`` per row against the teacher, and labels (if given) are
    regression targets mixed in with MSE; ``T`` is unused.

    Args:
        student_logits: The pruned model's output, ``[..., C]``.
        teacher_logits: The unpruned model's output for the same inputs (no gradient needed).
        labels: Class indices ``[...]`` (``kl``) or targets shaped like the output, or None.
        T: Softmax temperature (``kl``); higher spreads the teacher's probabilities.
        alpha: Weight of the distillation term against the label loss, in [0, 1].
        kind: ``kl``, ``mse`` or ``cosine``.
        ignore_index: Label value skipped by the cross-entropy (token tasks' padding).

    Returns:
        A scalar tensor to call ``backward()`` on.

    Example:
        >>> with torch.no_grad():
        ...     t = teacher(x)
        >>> loss = distillation_loss(student(x), t, y, T=4.0, alpha=0.7)
    """
    torch = require("torch", "export")
    F = torch.nn.functional
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distillation_loss: alpha must be in [0, 1], got {alpha}")
    if T <= 0:
        raise ConfigError(f"distillation_loss: T must be positive, got {T}")
    if tuple(student_logits.shape) != tuple(teacher_logits.shape):
        raise ConfigError(f"distillation_loss: student output {tuple(student_logits.shape)} and teacher output "
                          f"{tuple(teacher_logits.shape)} differ in shape")
    teacher_logits = teacher_logits.detach()
    c = student_logits.shape[-1]
    s = student_logits.reshape(-1, c)
    t = teacher_logits.reshape(-1, c)
    if kind == "kl":
        soft = F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), reduction="batchmean",
                        log_target=True) * (T * T)
        if labels is None:
            return soft
        hard = F.cross_entropy(s, labels.reshape(-1).long(), ignore_index=ignore_index)
    elif kind in ("mse", "cosine"):
        soft = F.mse_loss(s, t) if kind == "mse" else (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()
        if labels is None:
            return soft
        hard = F.mse_loss(s, labels.reshape(s.shape).to(s.dtype))
    else:
        raise ConfigError(f"distillation_loss: kind must be kl, mse or cosine, got '{kind}'")
    return alpha * soft + (1.0 - alpha) * hard
