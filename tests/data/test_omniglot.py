"""Tests for ``dfn_jax.data.omniglot``: the real zips (a few alphabets, and once everything with
the digest check), zips the tests write (corrupt, incomplete, repacked), the official runs, the
downsampling filter, the TFDS route and the download route (from a local ``file://`` folder or
refused, never the network)."""

from __future__ import annotations

import io
import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from dfn_jax.data import omniglot
from tests.helpers import offline_data

MAGI, GREEK = "Alphabet_of_the_Magi", "Greek"
BLACKFOOT, TAGALOG = "Blackfoot_(Canadian_Aboriginal_Syllabics)", "Tagalog"  # the two smallest


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch, tmp_path):
    """No test reads the user's Omniglot folder or cache, and none reaches the network."""
    offline_data(monkeypatch, tmp_path, "DFN_OMNIGLOT_DIR")


@pytest.fixture(scope="module")
def magi_greek(omniglot_dir):
    return omniglot.load_omniglot("background", alphabets=[GREEK, MAGI], omniglot_dir=omniglot_dir)


def _members(path: pathlib.Path, alphabets) -> dict[str, bytes]:
    """The PNG members of ``alphabets`` in an original zip, by name."""
    with zipfile.ZipFile(path) as archive:
        return {
            name: archive.read(name)
            for name in archive.namelist()
            if name.endswith(".png") and name.split("/")[1] in alphabets
        }


def _write_zip(path: pathlib.Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name in sorted(members, reverse=True):  # an order unlike the original's
            archive.writestr(name, members[name])


def _png(ink: np.ndarray) -> bytes:
    """A mode "1" PNG (white background, black ink) of a bool ink bitmap."""
    buffer = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# The real zips.


def test_alphabet_subset_layout(magi_greek):
    data = magi_greek
    assert data.split == "background" and data.alphabets == (MAGI, GREEK)
    assert data.num_characters == 20 + 24 and data.image_size == 28
    assert data.images.shape == (880, 28, 28) and data.images.dtype == np.float32
    assert data.images.min() == 0.0 and data.images.max() <= 1.0
    assert data.labels.dtype == data.drawers.dtype == data.character_alphabet.dtype == np.int32
    assert (
        data.characters[0] == f"{MAGI}/character01"
        and data.characters[-1] == f"{GREEK}/character24"
    )
    # Sorted order: labels ascending, 20 drawings per character, drawers 0..19 in each.
    np.testing.assert_array_equal(data.labels, np.repeat(np.arange(44), 20))
    np.testing.assert_array_equal(data.drawers, np.tile(np.arange(20), 44))
    np.testing.assert_array_equal(data.character_alphabet, np.repeat([0, 1], [20, 24]))


def test_ink_is_one_and_matches_the_png(omniglot_dir):
    data = omniglot.load_omniglot(
        "background", alphabets=MAGI, omniglot_dir=omniglot_dir, image_size=105
    )
    assert data.images.shape == (400, 105, 105)
    assert set(np.unique(data.images)) == {0.0, 1.0}
    assert 0.02 < data.images.mean() < 0.2  # ink is the minority
    border = np.concatenate([data.images[:, 0], data.images[:, -1]], axis=1)
    assert border.mean() < 0.01
    with zipfile.ZipFile(omniglot_dir / "images_background.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.startswith(f"images_background/{MAGI}/"))
        png = Image.open(io.BytesIO(archive.read([n for n in names if n.endswith(".png")][21])))
        assert png.mode == "1"
        # Drawing 21 is character02's second drawer; in mode "1" True is white.
        np.testing.assert_array_equal(data.images[21], ~np.asarray(png))


def test_downsampled_means_match_the_originals(magi_greek, omniglot_dir):
    full = omniglot.load_omniglot(
        "background", alphabets=[MAGI], omniglot_dir=omniglot_dir, image_size=105
    )
    small = magi_greek.images[:400]
    np.testing.assert_allclose(small.mean((1, 2)), full.images.mean((1, 2)), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(omniglot.area_downsample(full.images, image_size=28), small)


def test_all_digests_pass_for_the_shared_zips(omniglot_dir):
    """Every image of both big splits, decoded and checked against omniglot_digests.json."""
    counts = {"background": (30, 964, 19280), "evaluation": (20, 659, 13180)}
    loaded = {}
    for split, (_, characters, _) in counts.items():
        data = omniglot.load_omniglot(split, omniglot_dir=omniglot_dir, image_size=14)
        assert (len(data.alphabets), data.num_characters, len(data.images)) == counts[split]
        assert np.bincount(data.labels).tolist() == [20] * characters
        assert len(set(data.characters)) == characters
        loaded[split] = data.alphabets
    assert not set(loaded["background"]) & set(loaded["evaluation"])
    assert list(json.loads(_digest_json())["evaluation"]) == list(loaded["evaluation"])


def _digest_json() -> str:
    return (pathlib.Path(omniglot.__file__).parent / "omniglot_digests.json").read_text()


@pytest.mark.parametrize("split,alphabets", [("background_small1", 5), ("background_small2", 5)])
def test_minimal_splits(omniglot_dir, split, alphabets):
    data = omniglot.load_omniglot(split, omniglot_dir=omniglot_dir, image_size=8)
    assert data.split == split and len(data.alphabets) == alphabets
    assert data.images.shape == (20 * data.num_characters, 8, 8)


def test_environment_variable_names_the_folder(omniglot_dir, monkeypatch):
    monkeypatch.setenv("DFN_OMNIGLOT_DIR", str(omniglot_dir))
    data = omniglot.load_omniglot("evaluation", alphabets=["Angelic"])
    assert data.alphabets == ("Angelic",) and data.num_characters == 20


# ------------------------------------------------------------------------------------------------
# Zips the tests write: content is checked, not zip bytes.


@pytest.fixture(scope="module")
def two_alphabets(omniglot_dir) -> dict[str, bytes]:
    return _members(omniglot_dir / "images_background.zip", (BLACKFOOT, TAGALOG))


def test_repacked_zip_passes_and_digests_match_the_json(tmp_path, two_alphabets):
    _write_zip(tmp_path / "images_background.zip", two_alphabets, zipfile.ZIP_STORED)
    data = omniglot.load_omniglot(
        "background", alphabets=[TAGALOG, BLACKFOOT], omniglot_dir=tmp_path
    )
    assert data.alphabets == (BLACKFOOT, TAGALOG) and data.num_characters == 14 + 17
    digests = omniglot.omniglot_digests(tmp_path / "images_background.zip")
    expected = json.loads(_digest_json())["background"]
    assert digests == {"background": {a: expected[a] for a in (BLACKFOOT, TAGALOG)}}


def test_corrupted_image_names_split_and_alphabet(tmp_path, two_alphabets):
    members = dict(two_alphabets)
    name = sorted(n for n in members if f"/{TAGALOG}/" in n)[33]
    ink = ~np.asarray(Image.open(io.BytesIO(members[name])))
    ink[50, 50] = ~ink[50, 50]  # one pixel
    members[name] = _png(ink)
    _write_zip(tmp_path / "images_background.zip", members)
    with pytest.raises(ValueError, match=r"'background' alphabet 'Tagalog'.*sha256") as error:
        omniglot.load_omniglot("background", alphabets=[BLACKFOOT, TAGALOG], omniglot_dir=tmp_path)
    assert "corrupt or incomplete" in str(error.value)
    # The other alphabet is fine, and verify=False takes the zip as it is.
    omniglot.load_omniglot("background", alphabets=[BLACKFOOT], omniglot_dir=tmp_path)
    data = omniglot.load_omniglot(
        "background", alphabets=[TAGALOG], omniglot_dir=tmp_path, verify=False, image_size=105
    )
    assert data.images[33, 50, 50] == ink[50, 50]


def test_incomplete_zip_is_named(tmp_path, two_alphabets):
    members = dict(two_alphabets)
    del members[sorted(n for n in members if f"/{BLACKFOOT}/" in n)[0]]
    _write_zip(tmp_path / "images_background.zip", members)
    with pytest.raises(ValueError, match=r"num_images 279 \(expected 280\)") as error:
        omniglot.load_omniglot("background", alphabets=[BLACKFOOT], omniglot_dir=tmp_path)
    assert "Blackfoot" in str(error.value)
    with pytest.raises(ValueError, match="should hold the 30 original alphabets; missing"):
        omniglot.load_omniglot("background", omniglot_dir=tmp_path)
    with pytest.raises(ValueError, match="`alphabets` names \\['Latin'\\]"):
        omniglot.load_omniglot("background", alphabets=["Latin"], omniglot_dir=tmp_path)


def test_broken_files_are_value_errors(tmp_path, omniglot_dir):
    (tmp_path / "images_evaluation.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        omniglot.load_omniglot("evaluation", omniglot_dir=tmp_path)
    _write_zip(
        tmp_path / "images_evaluation.zip", {"images_evaluation/A/character01/1_01.png": b"x"}
    )
    with pytest.raises(ValueError, match="not a readable PNG"):
        omniglot.load_omniglot("evaluation", omniglot_dir=tmp_path, verify=False)
    _write_zip(tmp_path / "images_evaluation.zip", {"other/A/character01/1_01.png": b"x"})
    with pytest.raises(ValueError, match="has no images named images_evaluation/"):
        omniglot.load_omniglot("evaluation", omniglot_dir=tmp_path)
    # The minimal splits are checked byte for byte.
    members = _members(omniglot_dir / "images_background_small1.zip", ("Latin",))
    _write_zip(tmp_path / "images_background_small1.zip", members)
    with pytest.raises(ValueError, match="sha256 .* differs from the original's f38eb80f"):
        omniglot.load_omniglot("background_small1", omniglot_dir=tmp_path)
    data = omniglot.load_omniglot("background_small1", omniglot_dir=tmp_path, verify=False)
    assert data.alphabets == ("Latin",)


# ------------------------------------------------------------------------------------------------
# The official runs.


def test_official_runs(omniglot_dir):
    runs = omniglot.load_official_runs(omniglot_dir=omniglot_dir)
    assert runs.runs == tuple(f"run{r:02d}" for r in range(1, 21))
    assert runs.training.shape == runs.test.shape == (20, 20, 28, 28)
    assert runs.answers.shape == (20, 20) and runs.answers.dtype == np.int32
    for answers in runs.answers:
        assert sorted(answers.tolist()) == list(range(20))
    assert 0.02 < runs.training.mean() < 0.2 and 0.02 < runs.test.mean() < 0.2  # ink is 1
    # Against class_labels.txt read independently, and one image against its PNG.
    with zipfile.ZipFile(omniglot_dir / "all_runs.zip") as archive:
        lines = archive.read("run07/class_labels.txt").decode().split()
        png = archive.read("run07/training/class05.png")
    pairs = dict(zip(lines[::2], lines[1::2], strict=True))
    for i, answer in enumerate(runs.answers[6]):
        assert (
            pairs[f"run07/test/item{i + 1:02d}.png"] == f"run07/training/class{answer + 1:02d}.png"
        )
    full = omniglot.load_official_runs(omniglot_dir=omniglot_dir, image_size=105)
    np.testing.assert_array_equal(full.training[6, 4], ~np.asarray(Image.open(io.BytesIO(png))))
    np.testing.assert_array_equal(omniglot.area_downsample(full.test, image_size=28), runs.test)


def test_official_runs_are_one_alphabet_and_two_drawers_each(omniglot_dir):
    """Every image of the runs is found in the evaluation split; in each run all 20 training
    images are by one drawer and all 20 test images by another, of one alphabet, which is how
    ``episodes.EpisodeSampler(by_drawer=True)`` builds episodes."""
    runs = omniglot.load_official_runs(omniglot_dir=omniglot_dir)
    data = omniglot.load_omniglot("evaluation", omniglot_dir=omniglot_dir)
    training, test = omniglot.official_run_indices(runs, data)
    np.testing.assert_array_equal(data.images[training], runs.training)
    np.testing.assert_array_equal(data.images[test], runs.test)
    alphabets = set()
    for r in range(20):
        assert len(set(data.drawers[training[r]])) == 1 and len(set(data.drawers[test[r]])) == 1
        assert data.drawers[training[r, 0]] != data.drawers[test[r, 0]]
        characters = data.labels[training[r]]
        assert len(set(data.character_alphabet[characters])) == 1 and len(set(characters)) == 20
        np.testing.assert_array_equal(characters[runs.answers[r]], data.labels[test[r]])
        alphabets.add(data.alphabets[data.character_alphabet[characters[0]]])
    assert len(alphabets) == 10 and "Atlantean" in alphabets  # two runs per alphabet
    small = omniglot.load_omniglot(
        "evaluation", alphabets=["Atlantean"], omniglot_dir=omniglot_dir, image_size=14
    )
    with pytest.raises(ValueError, match="must be read at one image size"):
        omniglot.official_run_indices(runs, small)
    with pytest.raises(ValueError, match="run03/training/class01.png is not an image of the"):
        omniglot.official_run_indices(runs, omniglot.select_alphabets(data, ["Atlantean"]))


def test_runs_check_the_original_bytes(tmp_path, omniglot_dir):
    with zipfile.ZipFile(omniglot_dir / "all_runs.zip") as archive:
        members = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    members["run03/class_labels.txt"] = members["run03/class_labels.txt"].replace(
        b"item02", b"item01"
    )
    _write_zip(tmp_path / "all_runs.zip", members)
    with pytest.raises(ValueError, match="sha256"):
        omniglot.load_official_runs(omniglot_dir=tmp_path)
    with pytest.raises(ValueError, match="run03/class_labels.txt should pair item01..item20"):
        omniglot.load_official_runs(omniglot_dir=tmp_path, verify=False)


# ------------------------------------------------------------------------------------------------
# The downsampling filter.


def test_box_filter_constant_mean_and_blocks():
    ones = np.ones((2, 105, 105), bool)
    for size in (1, 14, 28, 50, 104):
        np.testing.assert_array_equal(omniglot.area_downsample(ones, image_size=size), 1.0)
        np.testing.assert_array_equal(omniglot.area_downsample(~ones, image_size=size), 0.0)
        half = omniglot.area_downsample(np.full((105, 105), 0.5, np.float32), image_size=size)
        np.testing.assert_allclose(half, 0.5, rtol=1e-6)
    rng = np.random.default_rng(0)
    ink = rng.random((3, 105, 105)) < 0.1
    for size in (7, 28, 33):
        out = omniglot.area_downsample(ink, image_size=size)
        assert out.dtype == np.float32 and out.shape == (3, size, size)
        np.testing.assert_allclose(out.mean((1, 2)), ink.mean((1, 2)), rtol=0, atol=1e-7)
        np.testing.assert_allclose(
            omniglot.area_downsample(ink.astype(np.float32), image_size=size), out, atol=1e-6
        )
    # An integer factor is the plain block mean.
    blocks = ink.reshape(3, 21, 5, 21, 5).mean((2, 4))
    np.testing.assert_allclose(omniglot.area_downsample(ink, image_size=21), blocks, atol=1e-7)
    # Against the overlap matrix written out for 105 -> 28 (each output pixel covers 3.75 pixels).
    weights = np.zeros((28, 105))
    for j in range(28):
        for i in range(105):
            weights[j, i] = max(0.0, min(i + 1, (j + 1) * 3.75) - max(i, j * 3.75)) / 3.75
    np.testing.assert_allclose(weights.sum(1), 1.0)
    reference = weights @ ink[0] @ weights.T
    np.testing.assert_allclose(
        omniglot.area_downsample(ink[0], image_size=28), reference, atol=1e-6
    )


# ------------------------------------------------------------------------------------------------
# Sources and arguments.


def test_not_found_says_how_to_supply_the_files(tmp_path):
    with pytest.raises(omniglot.OmniglotNotFoundError) as error:
        omniglot.load_omniglot("background", omniglot_dir=tmp_path, cache_dir=tmp_path / "cache")
    message = str(error.value)
    for text in (
        "images_background.zip. Tried, in order:",
        f"omniglot_dir: {str(tmp_path)!r} has no images_background.zip",
        "tfds_data_dir: not given",
        "is not there and download=False",
        "a folder holding the original zips (images_background.zip, images_evaluation.zip",
        "DFN_OMNIGLOT_DIR",
        "tfds build omniglot",
        "download=True, currently off",
        "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
    ):
        assert text in message, text
    with pytest.raises(omniglot.OmniglotNotFoundError, match="is not a directory"):
        omniglot.load_official_runs(omniglot_dir=tmp_path / "nowhere")


def test_download_failure_is_not_found(tmp_path):
    with pytest.raises(omniglot.OmniglotNotFoundError) as error:
        omniglot.load_official_runs(download=True)
    message = str(error.value)
    assert "one-shot-classification/all_runs.zip: network disabled in tests" in message
    assert "omniglot_dir: not given (and DFN_OMNIGLOT_DIR is not set)" in message
    assert not list((tmp_path / "default_cache" / "omniglot").iterdir())  # no temporary file left


def test_download_from_a_local_mirror(tmp_path, omniglot_dir, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(omniglot_dir / "images_background_small2.zip", mirror)
    (mirror / "images_background_small1.zip").write_bytes(b"truncated")
    monkeypatch.setattr(omniglot, "OMNIGLOT_BASE_URL", mirror.as_uri() + "/")
    cache = tmp_path / "cache"
    data = omniglot.load_omniglot("background_small2", download=True, cache_dir=cache, image_size=4)
    assert (cache / "images_background_small2.zip").is_file() and len(data.alphabets) == 5
    with pytest.raises(omniglot.OmniglotNotFoundError, match="differs from the expected"):
        omniglot.load_omniglot("background_small1", download=True, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == ["images_background_small2.zip"]
    # Later loads read the cache, without the network.
    (mirror / "images_background_small2.zip").unlink()
    assert omniglot.load_omniglot("background_small2", cache_dir=cache, image_size=4).alphabets


class _FakeSource:
    """What ``tfds.data_source("omniglot", ...)`` returns: records and the dataset info."""

    def __init__(self, records, alphabets):
        self.records = records
        label = type("ClassLabel", (), {"names": alphabets})()
        self.dataset_info = type("Info", (), {"features": {"alphabet": label}})()

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def test_tfds_data_source(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    names = ["Angelic", "Atemayar_Qelisayer", "Tengwar"]
    keys = [(2, 0), (0, 1), (0, 0), (2, 0), (0, 0)]  # (alphabet, character id), shuffled
    inks = rng.random((len(keys), 105, 105)) < 0.1
    records = [
        {"image": np.repeat(np.where(ink, 0, 255).astype(np.uint8)[..., None], 3, -1),
         "alphabet": a, "alphabet_char_id": c, "label": 7}
        for ink, (a, c) in zip(inks, keys, strict=True)
    ]  # fmt: skip
    calls = []

    def fake_data_source(name, *, split, data_dir, download, **kwargs):
        calls.append((name, split, download))
        return _FakeSource(records, names)

    monkeypatch.setattr(tfds, "data_source", fake_data_source)
    data = omniglot.load_omniglot("evaluation", tfds_data_dir=tmp_path, image_size=105)
    assert calls == [("omniglot", "test", False)]
    assert data.alphabets == ("Angelic", "Tengwar")
    assert data.characters == ("Angelic/character01", "Angelic/character02", "Tengwar/character01")
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(data.drawers, -1)
    np.testing.assert_array_equal(data.images, inks[[2, 4, 1, 0, 3]])  # stable within a class
    only = omniglot.load_omniglot("background", alphabets=["Tengwar"], tfds_data_dir=tmp_path)
    assert calls[-1][1] == "train" and only.images.shape == (2, 28, 28)


def test_bad_arguments_are_named(omniglot_dir):
    for kwargs, match in [
        ({"split": "train"}, "`split` must be one of"),
        ({"split": "background", "image_size": 0}, "`image_size` must be an int in 1..105"),
        ({"split": "background", "image_size": 106}, "`image_size`"),
        ({"split": "background", "image_size": 28.0}, "`image_size`"),
        ({"split": "background", "verify": 1}, "`verify` must be a bool"),
        ({"split": "background", "alphabets": []}, "`alphabets` must be None"),
        ({"split": "background", "alphabets": ["Klingon"]}, "`alphabets` names \\['Klingon'\\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            omniglot.load_omniglot(omniglot_dir=omniglot_dir, **kwargs)
    with pytest.raises(ValueError, match="`omniglot_dir` must be a path"):
        omniglot.load_omniglot("background", omniglot_dir=3)


# ------------------------------------------------------------------------------------------------
# Held-out alphabets.


def test_split_background_alphabets(magi_greek, omniglot_dir):
    data = omniglot.load_omniglot("background_small1", omniglot_dir=omniglot_dir, image_size=6)
    train, val = omniglot.split_background_alphabets(data, num_val_alphabets=2, seed=3)
    again = omniglot.split_background_alphabets(data, num_val_alphabets=2, seed=3)
    assert (train.alphabets, val.alphabets) == (again[0].alphabets, again[1].alphabets)
    assert len(val.alphabets) == 2 and sorted(train.alphabets + val.alphabets) == list(
        data.alphabets
    )
    assert len(train.images) + len(val.images) == len(data.images)
    for part in (train, val):
        assert part.labels.max() + 1 == part.num_characters  # renumbered from 0
        names = [part.characters[i] for i in part.labels]
        rows = [data.characters.index(n) for n in names]
        assert all(n.split("/")[0] in part.alphabets for n in names)
        np.testing.assert_array_equal(np.bincount(rows, minlength=data.num_characters)[rows], 20)
    seeds = {omniglot.split_background_alphabets(data, num_val_alphabets=2, seed=s)[1].alphabets
             for s in range(8)}  # fmt: skip
    assert len(seeds) > 1
    # Selecting alphabets equals loading only them.
    greek = omniglot.select_alphabets(magi_greek, [GREEK])
    direct = omniglot.load_omniglot("background", alphabets=[GREEK], omniglot_dir=omniglot_dir)
    np.testing.assert_array_equal(greek.images, direct.images)
    np.testing.assert_array_equal(greek.labels, direct.labels)
    assert greek.characters == direct.characters
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="`num_val_alphabets` must be an int in 1..4"):
            omniglot.split_background_alphabets(data, num_val_alphabets=bad)
