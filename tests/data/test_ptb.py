"""Character-level PTB: the 50-symbol vocabulary, streams and their errors."""

import numpy as np
import pytest

from dfn_jax.data import ptb


def test_lines_encode_with_an_end_of_sentence_each_and_decode_back():
    ids = ptb.encode_lines(["a _ b", "", "c d"])
    assert len(ptb.VOCABULARY) == 50
    assert ids.tolist() == [ptb.VOCABULARY.index(c) for c in "a_b"] + [0] + [
        ptb.VOCABULARY.index(c) for c in "cd"
    ] + [0]
    assert ptb.decode(ids) == "a b\ncd\n"


def test_a_foreign_character_names_the_file_and_line():
    with pytest.raises(ValueError, match=r"x.txt, line 2: 'A' is not in the PTB character"):
        ptb.encode_lines(["a b", "a A"], source="x.txt")


def test_streams_are_contiguous_rows(tmp_path):
    rows = ptb.batch_streams(np.arange(11), 3)
    assert rows.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(ValueError, match="cannot fill"):
        ptb.batch_streams(np.arange(3), 2)
    with pytest.raises(FileNotFoundError, match="ptb.char.train.txt"):
        ptb.load_ptb_chars(tmp_path, "train")
    with pytest.raises(ValueError, match="`split` must be one of"):
        ptb.load_ptb_chars(tmp_path, "dev")


def test_the_shared_files_have_the_standard_sizes(shared_data_dir):
    sizes = {s: len(ptb.load_ptb_chars(shared_data_dir / "ptb", s)) for s in ptb.SPLITS}
    assert sizes == {"train": 5_017_482, "valid": 393_042, "test": 442_423}
