"""Character-level Penn Treebank (Mikolov's split: ``ptb.char.{train,valid,test}.txt``).

Each file holds one sentence per line, characters separated by spaces and ``_`` for a space
between words. The vocabulary is the 49 characters of the files plus an end-of-sentence symbol
appended to every line: 50 symbols, the HyperNetworks paper's (its parameter counts use a
50-way softmax). A character outside it is an error naming the file and the line, so a wrong
file is caught at once.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from dfn_jax._src.checks import choice, positive_int

END_OF_SENTENCE = "<eos>"
CHARACTERS = tuple("#$&'*-./0123456789<>N\\_abcdefghijklmnopqrstuvwxyz")
VOCABULARY = (END_OF_SENTENCE, *CHARACTERS)
"""The 50 symbols; a token's id is its index here."""
SPLITS = ("train", "valid", "test")
_ID = {c: i for i, c in enumerate(VOCABULARY)}


def ptb_char_path(ptb_dir: str | os.PathLike, split: str) -> pathlib.Path:
    choice(split, SPLITS, name="split")
    path = pathlib.Path(ptb_dir).expanduser() / f"ptb.char.{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"No {path.name} in {str(ptb_dir)!r}: pass `data.ptb_dir` (or DFN_PTB_DIR), a folder "
            "with Mikolov's ptb.char.{train,valid,test}.txt (the 'simple-examples' archive)."
        )
    return path


def encode_lines(lines, *, source: str = "text") -> np.ndarray:
    """Token ids ``int32 [N]`` of lines of space-separated characters, an end-of-sentence after
    each non-empty line."""
    ids = []
    for number, line in enumerate(lines, start=1):
        chars = line.split()
        if not chars:
            continue
        try:
            ids.extend(_ID[c] for c in chars)
        except KeyError:
            bad = next(c for c in chars if c not in _ID)
            raise ValueError(
                f"{source}, line {number}: {bad!r} is not in the PTB character vocabulary "
                f"({len(VOCABULARY)} symbols); is this a ptb.char.*.txt file?"
            ) from None
        ids.append(_ID[END_OF_SENTENCE])
    return np.asarray(ids, np.int32)


def load_ptb_chars(ptb_dir: str | os.PathLike, split: str) -> np.ndarray:
    """The ``split`` stream as token ids ``int32 [N]`` (train: 5.0M, valid: 0.39M, test: 0.44M)."""
    path = ptb_char_path(ptb_dir, split)
    with open(path, encoding="utf-8") as f:
        return encode_lines(f, source=str(path))


def decode(ids) -> str:
    """Text of token ids: ``_`` becomes a space, end-of-sentence a newline."""
    out = [VOCABULARY[int(i)] for i in np.asarray(ids).reshape(-1)]
    return "".join("\n" if c == END_OF_SENTENCE else " " if c == "_" else c for c in out)


def batch_streams(ids: np.ndarray, rows: int) -> np.ndarray:
    """``ids [N]`` cut into ``rows`` contiguous streams ``[rows, N // rows]`` (the tail that does
    not fill a row is dropped), the layout of truncated backpropagation through time: segment
    ``s`` of every row follows segment ``s - 1`` of the same row."""
    positive_int(rows, name="rows")
    length = len(ids) // rows
    if length < 2:
        raise ValueError(f"{len(ids)} tokens cannot fill {rows} rows of at least 2.")
    return np.asarray(ids[: rows * length]).reshape(rows, length)
