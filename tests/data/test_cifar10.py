"""CIFAR-10 from small files the tests write in both official formats (binary records, pickled
Python batches read without unpickling), from archives in memory and unpacked folders, and TFDS."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from dfn_jax.data import cifar10

SIZES = {"data_batch_1": 3, "data_batch_2": 2, "data_batch_3": 1, "data_batch_4": 2,
         "data_batch_5": 1, "test_batch": 4}  # fmt: skip


def _batches(seed=0):
    """``{batch name: (images [N, 32, 32, 3], labels [N])}`` of random content."""
    rng = np.random.default_rng(seed)
    return {
        name: (rng.integers(0, 256, (n, 32, 32, 3), np.uint8), rng.integers(0, 10, n, np.uint8))
        for name, n in SIZES.items()
    }


def _planar(images):
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _binary_bytes(images, labels):
    return np.concatenate([labels[:, None], _planar(images)], axis=1).tobytes()


def _python_bytes(images, labels, *, protocol, bytes_keys):
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": [int(v) for v in labels],
        "data": _planar(images),
        "filenames": [
            f"image_{i:06d}_with_a_long_descriptive_name.png" for i in range(len(labels))
        ],
    }
    if bytes_keys:  # what the originals give when read with encoding="bytes"
        batch = {k.encode(): v for k, v in batch.items()}
    return pickle.dumps(batch, protocol=protocol)


def _write_folder(folder, version, batches, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        if version == "binary":
            (folder / f"{name}.bin").write_bytes(_binary_bytes(images, labels))
        else:
            (folder / name).write_bytes(_python_bytes(images, labels, **kwargs))


def _write_archive(path, version, batches, **kwargs):
    top = "cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py"
    with tarfile.open(path, "w:gz") as archive:
        for name, (images, labels) in batches.items():
            if version == "binary":
                data, member = _binary_bytes(images, labels), f"{top}/{name}.bin"
            else:
                data, member = _python_bytes(images, labels, **kwargs), f"{top}/{name}"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _expected(batches, split):
    names = cifar10.BATCHES[split]
    return (np.concatenate([batches[n][0] for n in names]),
            np.concatenate([batches[n][1] for n in names]))  # fmt: skip


FORMATS = [
    ("binary", {}),
    ("python", {"protocol": 2, "bytes_keys": False}),  # as the originals (Python 2 cPickle)
    ("python", {"protocol": 4, "bytes_keys": True}),
]


@pytest.mark.parametrize("version,kwargs", FORMATS)
@pytest.mark.parametrize("packed", [True, False])
def test_reads_both_formats_packed_or_not(tmp_path, version, kwargs, packed):
    batches = _batches()
    if packed:
        _write_archive(tmp_path / cifar10.ARCHIVES[version], version, batches, **kwargs)
    else:
        sub = "cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py"
        _write_folder(tmp_path / sub, version, batches, **kwargs)
    for split in cifar10.SPLITS:
        images, labels = cifar10.load_cifar10(split, cifar_dir=tmp_path)
        want_images, want_labels = _expected(batches, split)
        assert images.dtype == np.uint8 and images.shape == want_images.shape
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def test_python_batches_are_never_unpickled(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used to load a user's file")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    batches = _batches()
    data = _python_bytes(*batches["test_batch"], protocol=2, bytes_keys=False)
    images, labels = cifar10.read_python_batch(data)
    np.testing.assert_array_equal(images, batches["test_batch"][0])
    # A pickle that would run code if unpickled is only parsed, and rejected as not CIFAR-10.
    evil = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(ValueError, match="no `labels` list"):
        cifar10.read_python_batch(evil, "evil")


class _Evil:
    def __reduce__(self):
        return (print, ("this would run",))


def test_splits_hold_out_the_last_training_images(tmp_path):
    batches = _batches()
    _write_folder(tmp_path, "binary", batches)
    splits = cifar10.cifar10_classification_splits(cifar_dir=tmp_path, validation_size=2)
    train_images, train_labels = _expected(batches, "train")
    assert {k: len(v[0]) for k, v in splits.items()} == {"train": 7, "val": 2, "test": 4}
    np.testing.assert_array_equal(splits["val"][0], train_images[-2:])
    np.testing.assert_array_equal(splits["train"][1], train_labels[:-2])
    assert splits["train"][1].dtype == np.int32
    with pytest.raises(ValueError, match="`validation_size`"):
        cifar10.cifar10_classification_splits(cifar_dir=tmp_path, validation_size=9)


def test_environment_variable_names_the_folder(tmp_path, monkeypatch):
    _write_folder(tmp_path, "binary", _batches())
    monkeypatch.setenv("DFN_CIFAR10_DIR", str(tmp_path))
    assert cifar10.load_cifar10("test")[0].shape == (4, 32, 32, 3)


def test_missing_data_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DFN_CIFAR10_DIR", raising=False)
    with pytest.raises(cifar10.CIFAR10NotFoundError, match="cifar-10-binary.tar.gz") as error:
        cifar10.load_cifar10("train", cifar_dir=tmp_path)
    assert "has neither archive" in str(error.value) and "tfds build cifar10" in str(error.value)
    with pytest.raises(cifar10.CIFAR10NotFoundError, match="is not a directory"):
        cifar10.load_cifar10("train", cifar_dir=tmp_path / "nowhere")


def test_bad_files_and_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="`split`"):
        cifar10.load_cifar10("valid", cifar_dir=tmp_path)
    with pytest.raises(ValueError, match="`cifar_dir` must be a path"):
        cifar10.load_cifar10("test", cifar_dir=3)
    with pytest.raises(ValueError, match="3073-byte"):
        cifar10.read_binary_batch(b"\x00" * 3000, "x.bin")
    record = np.zeros(3073, np.uint8)
    record[0] = 11
    with pytest.raises(ValueError, match="labels are 0..9"):
        cifar10.read_binary_batch(record.tobytes(), "x.bin")
    with pytest.raises(ValueError, match="not a readable pickle"):
        cifar10.read_python_batch(b"\x80\x02garbage", "x")
    batches = _batches()
    del batches["data_batch_3"]
    _write_archive(tmp_path / cifar10.ARCHIVES["binary"], "binary", batches)
    with pytest.raises(ValueError, match="data_batch_3.bin"):
        cifar10.load_cifar10("train", cifar_dir=tmp_path)


def test_tfds_data_source(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    records = [{"image": rng.integers(0, 256, (32, 32, 3), np.uint8), "label": i} for i in range(5)]
    calls = []

    def fake_data_source(name, *, split, data_dir, download, **kwargs):
        calls.append((name, split, download))
        return records

    monkeypatch.delenv("DFN_CIFAR10_DIR", raising=False)
    monkeypatch.setattr(tfds, "data_source", fake_data_source)
    images, labels = cifar10.load_cifar10("test", tfds_data_dir=tmp_path)
    assert calls == [("cifar10", "test", False)]
    np.testing.assert_array_equal(images[2], records[2]["image"])
    np.testing.assert_array_equal(labels, np.arange(5))


def _py2_style_pickle(images, labels):
    """The opcodes of a Python 2 ``cPickle.dump(batch, protocol=2)`` of a CIFAR batch: byte-string
    keys (SHORT_BINSTRING) and the array's bytes as one BINSTRING."""
    import struct

    def short(text):
        return b"U" + bytes([len(text)]) + text.encode()

    ints = b"".join(b"K" + bytes([int(v)]) for v in labels)
    pixels = _planar(images).tobytes()
    return b"".join([
        b"\x80\x02}q\x01(", short("labels"), b"]q\x02(", ints, b"e",
        short("data"), b"cnumpy.core.multiarray\n_reconstruct\nq\x03",
        b"cnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01", b"M" + struct.pack("<H", len(labels)),
        b"M\x00\x0c\x86cnumpy\ndtype\n", short("u1"), b"K\x00K\x01\x87R(K\x03", short("|"),
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89",
        b"T" + struct.pack("<i", len(pixels)) + pixels, b"tbu.",
    ])  # fmt: skip


def test_reads_the_python_2_pickle_layout_of_the_originals():
    images, labels = _batches()["data_batch_1"]
    got_images, got_labels = cifar10.read_python_batch(_py2_style_pickle(images, labels))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
