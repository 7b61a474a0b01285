"""Train / validation / test splits for classification: a validation set held out of the
official training split (the first or the last ``validation_size`` examples)."""

from __future__ import annotations

import numpy as np

from dfn_jax._src.checks import choice, positive_int


def holdout_splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    validation_size: int,
    validation_from: str,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "val", "test"}`` -> ``(images, labels int32)``; the validation set is the
    ``"first"`` or ``"last"`` ``validation_size`` training examples."""
    positive_int(validation_size, name="validation_size")
    images, labels = train
    if validation_size >= len(images):
        raise ValueError(
            f"`validation_size` ({validation_size}) must leave training images "
            f"(there are {len(images)})."
        )
    choice(validation_from, ("first", "last"), name="validation_from")
    if validation_from == "first":
        held, kept = slice(None, validation_size), slice(validation_size, None)
    else:
        cut = len(images) - validation_size
        held, kept = slice(cut, None), slice(None, cut)
    return {
        "train": (images[kept], labels[kept].astype(np.int32)),
        "val": (images[held], labels[held].astype(np.int32)),
        "test": (test[0], test[1].astype(np.int32)),
    }
