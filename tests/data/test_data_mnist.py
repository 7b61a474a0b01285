"""Tests for ``dfn_jax.data.mnist``: the real IDX files, their checks, the TFDS route and the
download route (served from local ``file://`` mirrors or refused, never the network)."""

from __future__ import annotations

import hashlib
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from dfn_jax.data import mnist
from tests.helpers import offline_data

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch, tmp_path):
    """No test reads the user's MNIST folder or cache, and none reaches the network."""
    offline_data(monkeypatch, tmp_path, "DFN_MNIST_DIR")


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


# ------------------------------------------------------------------------------------------------
# The real files.


@pytest.fixture(scope="module")
def test_split(mnist_dir):
    return mnist.load_mnist("test", mnist_dir=mnist_dir, download=False)


def test_real_test_split(test_split):
    images, labels = test_split
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert images.min() == 0 and images.max() == 255
    assert images.flags.writeable and images.flags.c_contiguous


def test_real_train_split(mnist_dir):
    digits = mnist.load_mnist_digits("train", mnist_dir=str(mnist_dir), download=False)
    labels = mnist.load_mnist_labels("train", mnist_dir=mnist_dir, download=False)
    assert digits.shape == (60000, 28, 28) and digits.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS


def test_environment_variable_names_the_folder(mnist_dir, monkeypatch):
    monkeypatch.setenv("DFN_MNIST_DIR", str(mnist_dir))
    labels = mnist.load_mnist_labels("test", download=False)
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS


def test_digits_to_float(test_split):
    images = test_split[0][:50]
    floats = mnist.digits_to_float(images)
    assert floats.dtype == np.float32 and isinstance(floats, np.ndarray)
    assert floats.min() == 0.0 and floats.max() == 1.0
    np.testing.assert_array_equal(np.round(floats * 255).astype(np.uint8), images)
    on_device = mnist.digits_to_float(jnp.asarray(images))
    assert on_device.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(on_device), floats)
    assert mnist.digits_to_float(floats).dtype == np.float32
    with pytest.raises(ValueError, match="`digits`.*int32"):
        mnist.digits_to_float(images.astype(np.int32))


# ------------------------------------------------------------------------------------------------
# File checks.


def test_corrupt_gzip_fails_its_sha256(mnist_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, tmp_path / name)
    # Still a valid gzip of the same images (only the header's timestamp changes): only the hash
    # can tell.
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[4:8] = (123456789).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    np.testing.assert_array_equal(
        mnist.read_idx_file(path), mnist.read_idx_file(mnist_dir / path.name)
    )
    expected = mnist.MNIST_FILES[("test", "images")].sha256
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz") as info:
        mnist.load_mnist_digits("test", mnist_dir=tmp_path, download=False)
    message = str(info.value)
    assert expected in message and "sha256" in message
    actual = hashlib.sha256((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert actual in message


def test_uncompressed_files_are_read_without_hash(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images, 2051))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 2049))
    got_images, got_labels = mnist.load_mnist("test", mnist_dir=tmp_path, download=False)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_wrong_magic_number(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images, 2049))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*magic number 2049.*2051"):
        mnist.load_mnist_digits("test", mnist_dir=tmp_path, download=False)


def test_header_must_match_file_size(tmp_path):
    data = _idx_bytes(np.zeros((3, 28, 28), np.uint8), 2051)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"header shape \(3, 28, 28\).*2,368 bytes.*2,358"):
        mnist.load_mnist_digits("test", mnist_dir=tmp_path, download=False)


def test_image_size_must_be_28(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 27, 28)), 2051))
    with pytest.raises(ValueError, match=r"shape \(2, 27, 28\), expected \[N, 28, 28\]"):
        mnist.load_mnist_digits("test", mnist_dir=tmp_path, download=False)


def test_bad_gzip_stream(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not a gzip stream")
    with pytest.raises(ValueError, match="not a valid gzip"):
        mnist.read_idx_file(tmp_path / "x.gz")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"split": "validation"}, r"`split` must be one of \('train', 'test'\), got 'validation'"),
        ({"mnist_dir": 3}, "`mnist_dir` must be a path"),
        ({"tfds_data_dir": 3.5}, "`tfds_data_dir` must be a path"),
        ({"download": "yes"}, "`download` must be a bool"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        mnist.load_mnist_digits(**kwargs)


# ------------------------------------------------------------------------------------------------
# Not found, download and cache.


def test_offline_error_names_all_three_ways(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(mnist.MNISTNotFoundError) as info:
        mnist.load_mnist_digits("train", mnist_dir=tmp_path / "nowhere", cache_dir=cache)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for needle in (
        "mnist_dir=",
        "DFN_MNIST_DIR",
        "data.mnist_dir",
        "tfds_data_dir=",
        "download",
        str(cache),
        "nowhere",
        "network disabled in tests",
        "train-images-idx3-ubyte.gz",
    ):
        assert needle in message, needle
    assert not any(cache.iterdir()), "a failed download must leave no partial file"


def test_download_disabled(tmp_path):
    with pytest.raises(mnist.MNISTNotFoundError, match="download=False"):
        mnist.load_mnist_labels("test", cache_dir=tmp_path, download=False)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DFN_CACHE_DIR", str(tmp_path))
    assert mnist.default_cache_dir() == tmp_path / "mnist"
    monkeypatch.delenv("DFN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist.default_cache_dir() == tmp_path / "xdg" / "dfn_jax" / "mnist"


def test_download_checks_hash_and_falls_back_to_next_mirror(mnist_dir, tmp_path, monkeypatch):
    bad_mirror = tmp_path / "bad_mirror"
    bad_mirror.mkdir()
    (bad_mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    monkeypatch.setattr(
        mnist,
        "MNIST_MIRRORS",
        (bad_mirror.as_uri() + "/", (tmp_path / "missing").as_uri(), mnist_dir.as_uri() + "/"),
    )
    cache = tmp_path / "cache"
    labels = mnist.load_mnist_labels("test", cache_dir=cache)
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-labels-idx1-ubyte.gz"]

    # Cached now: found again without any mirror.
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ())
    again = mnist.load_mnist_labels("test", cache_dir=cache, download=False)
    np.testing.assert_array_equal(again, labels)

    # A corrupt cached file is an error when it cannot be replaced.
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="sha256"):
        mnist.load_mnist_labels("test", cache_dir=cache, download=False)


def test_download_failure_lists_each_mirror(tmp_path, monkeypatch):
    bad_mirror = tmp_path / "bad_mirror"
    bad_mirror.mkdir()
    (bad_mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(b"wrong bytes")
    monkeypatch.setattr(
        mnist, "MNIST_MIRRORS", (bad_mirror.as_uri() + "/", "https://example.invalid/mnist/")
    )
    with pytest.raises(mnist.MNISTNotFoundError) as info:
        mnist.load_mnist_labels("test", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "differs from the expected" in message and "example.invalid" in message


# ------------------------------------------------------------------------------------------------
# TFDS data_source.


def _fake_records(num: int) -> list[dict]:
    rng = np.random.default_rng(1)
    return [
        {"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": i % 10}
        for i in range(num)
    ]


def test_tfds_data_source(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    records = _fake_records(7)
    calls = []

    def fake_data_source(name, *, split, data_dir, download, **kwargs):
        calls.append((name, split, data_dir, download))
        return records

    monkeypatch.setattr(tfds, "data_source", fake_data_source)
    images, labels = mnist.load_mnist("test", tfds_data_dir=tmp_path, download=False)
    assert calls == [("mnist", "test", str(tmp_path), False)]
    assert images.shape == (7, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[3], records[3]["image"][..., 0])
    np.testing.assert_array_equal(labels, np.arange(7) % 10)
    digits = mnist.load_mnist_digits("train", tfds_data_dir=tmp_path, download=False)
    assert digits.shape == (7, 28, 28)


def test_tfds_failure_falls_through(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    def failing_data_source(*args, **kwargs):
        raise FileNotFoundError("mnist is not prepared here")

    monkeypatch.setattr(tfds, "data_source", failing_data_source)
    with pytest.raises(mnist.MNISTNotFoundError, match="mnist is not prepared here"):
        mnist.load_mnist_digits(
            "test", tfds_data_dir=tmp_path, cache_dir=tmp_path / "c", download=False
        )


def test_mnist_dir_has_priority_over_tfds(mnist_dir, monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds, "data_source", lambda *a, **k: pytest.fail("TFDS was consulted"))
    labels = mnist.load_mnist_labels(
        "test", mnist_dir=pathlib.Path(mnist_dir), tfds_data_dir=tmp_path, download=False
    )
    assert labels.shape == (10000,)
