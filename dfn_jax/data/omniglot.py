"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015) for one-shot learning: the character images
of each split and the 20 official one-shot classification runs.

``load_omniglot(split)`` returns an :class:`OmniglotSplit`: ``images float32 [N, S, S]`` in
[0, 1] with **ink 1** and background 0, ``labels int32 [N]`` (the character within what was
loaded), ``drawers int32 [N]``, ``character_alphabet int32 [C]``, and the ``alphabets`` and
``characters`` (``"Alphabet/characterNN"``) names. Order: alphabets sorted by name, characters
by folder name, drawings by file name; it never depends on the zip's member order. Splits:
``"background"`` (30 alphabets, 964 characters, 19,280 drawings), ``"evaluation"`` (20, 659,
13,180) and the official minimal splits ``"background_small1"`` / ``"background_small2"`` (5
alphabets each). ``alphabets=`` loads only some alphabets (decoding is the slow part).

Downsampling (``image_size`` S, default 28; 105 keeps the originals): exact area averaging, each
output pixel the ink fraction of its 105/S x 105/S footprint, pixels partly inside counting by
the covered fraction (so a constant image stays constant and the mean ink is preserved). This
is not Pillow's ``BOX`` filter, which for non-integer ratios weighs whole pixels by whether their
centre falls inside. Decoding and downsampling everything takes about 1-2 s per split on one
core, so nothing is cached.

Sources, tried in order:

1. ``omniglot_dir`` (or the environment variable ``DFN_OMNIGLOT_DIR`` when it is ``None``): a
   folder holding the original zips ``images_background.zip``, ``images_evaluation.zip``,
   ``images_background_small1.zip``, ``images_background_small2.zip``, ``all_runs.zip``
   (``ZIP_FILES``), read in memory, never extracted.
2. ``tfds_data_dir`` (splits only, not the runs): a TFDS data dir where ``omniglot`` is prepared,
   read through ``tfds.data_source`` (no TensorFlow needed, no digest check). TFDS keeps the
   alphabet and the character number but not the file names, so ``drawers`` is -1 and the
   drawings of a character come in TFDS's record order. Its splits ``train``, ``test``,
   ``small1``, ``small2`` are ours ``background``, ``evaluation``, ``background_small1``,
   ``background_small2``.
3. The cache dir (``cache_dir``, else ``$DFN_CACHE_DIR/omniglot``, else
   ``~/.cache/dfn_jax/omniglot``): zips downloaded earlier, then, with ``download=True``, a fresh
   download from ``OMNIGLOT_BASE_URL`` (the dataset's GitHub repository), written to a temporary
   file, checked (sha256 for the byte-exact files, the zip's CRCs for the others) and renamed.

With ``verify=True`` (the default) the content is checked before it is returned.
``images_background.zip`` and ``images_evaluation.zip`` are checked by content, alphabet by
alphabet, against ``omniglot_digests.json`` shipped with the package (the digest, defined in
``dfn_jax.data._omniglot_files``, covers the decoded images and their names, not the zip bytes,
so repacked copies pass); the minimal splits and ``all_runs.zip`` by their file sha256
(``ORIGINAL_SHA256``). The JSON was written by ``python -m dfn_jax.data.omniglot DIR`` from the
two zips in ``DIR`` (see :func:`omniglot_digests`).

:func:`split_background_alphabets` holds whole alphabets out for validation;
:func:`load_official_runs` reads the 20 runs of 20-way one-shot classification within an
alphabet (Lake et al. 2015), drawn from the evaluation alphabets, and
:func:`official_run_indices` finds each of their images in the evaluation split (its character
and drawer: every run's 20 training images are by one drawer, its 20 test images by another).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import json
import logging
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable, Sequence

import numpy as np

from dfn_jax._src.checks import choice, is_int, optional_path
from dfn_jax.data import _download
from dfn_jax.data import _omniglot_files as files

__all__ = [
    "DIGEST_SPLITS",
    "ORIGINAL_SHA256",
    "OMNIGLOT_BASE_URL",
    "SPLITS",
    "ZIP_FILES",
    "OmniglotNotFoundError",
    "OmniglotRuns",
    "OmniglotSplit",
    "area_downsample",
    "default_cache_dir",
    "load_official_runs",
    "load_omniglot",
    "official_run_indices",
    "omniglot_digests",
    "select_alphabets",
    "split_background_alphabets",
]

_LOG = logging.getLogger(__name__)

SPLITS = ("background", "evaluation", "background_small1", "background_small2")
DIGEST_SPLITS = ("background", "evaluation")
"""The splits checked against ``omniglot_digests.json`` (the others by file sha256)."""
RUNS_FILE = "all_runs.zip"
ZIP_FILES = {split: f"images_{split}.zip" for split in SPLITS} | {"runs": RUNS_FILE}
ORIGINAL_SHA256 = {
    "images_background_small1.zip": (
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"
    ),
    "images_background_small2.zip": (
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"
    ),
    RUNS_FILE: "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
}
"""sha256 of the original files checked byte for byte."""
OMNIGLOT_BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
_DOWNLOAD_PATHS = {name: name for name in ZIP_FILES.values()} | {
    RUNS_FILE: "one-shot-classification/" + RUNS_FILE
}
_TFDS_SPLITS = dict(zip(SPLITS, ("train", "test", "small1", "small2"), strict=True))
_DIGESTS_FILE = "omniglot_digests.json"


class OmniglotNotFoundError(FileNotFoundError):
    """No source supplied the Omniglot files; the message lists what was tried and how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class OmniglotSplit:
    """The drawings of one split (or of some of its alphabets), in sorted order.

    Attributes:
      split: the split's name, e.g. ``"background"``.
      images: ``float32 [N, S, S]`` in [0, 1], ink 1, background 0.
      labels: ``int32 [N]``, the character of each drawing, an index into ``characters``.
      drawers: ``int32 [N]``, the drawer of each drawing, 0..19 (the file name's ``DD`` - 1), or
        -1 when the source does not say (TFDS).
      character_alphabet: ``int32 [C]``, each character's alphabet, an index into ``alphabets``.
      alphabets: the alphabet names, sorted.
      characters: ``"Alphabet/characterNN"`` of each character, sorted.
    """

    split: str
    images: np.ndarray
    labels: np.ndarray
    drawers: np.ndarray
    character_alphabet: np.ndarray
    alphabets: tuple[str, ...]
    characters: tuple[str, ...]

    @property
    def num_characters(self) -> int:
        return len(self.characters)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class OmniglotRuns:
    """The official 20-way one-shot classification runs (``R = 20`` runs of ``T = 20`` trials).

    Attributes:
      runs: the run names, ``("run01", ..., "run20")``.
      training: ``float32 [R, T, S, S]``, ink 1: one exemplar of each of the run's ``T``
        characters (``training[r, c]`` is ``runRR/training/classCC.png``, CC = c + 1).
      test: ``float32 [R, T, S, S]``, ink 1: ``test[r, i]`` is ``runRR/test/itemII.png``.
      answers: ``int32 [R, T]``: ``training[r, answers[r, i]]`` shows the character of
        ``test[r, i]`` (from ``class_labels.txt``); a permutation of 0..T-1 in every run.
    """

    runs: tuple[str, ...]
    training: np.ndarray
    test: np.ndarray
    answers: np.ndarray


def default_cache_dir() -> pathlib.Path:
    """The Omniglot download cache: ``$DFN_CACHE_DIR/omniglot``, else
    ``$XDG_CACHE_HOME/dfn_jax/omniglot``, else ``~/.cache/dfn_jax/omniglot``."""
    return _download.default_cache_dir("omniglot")


def area_downsample(images: np.ndarray, *, image_size: int) -> np.ndarray:
    """Exact area averaging of ``images [..., H, W]`` (e.g. ink bitmaps ``[N, 105, 105]``) to
    ``float32 [..., image_size, image_size]``: each output pixel is the mean over its footprint,
    input pixels partly inside weighted by the covered fraction. A constant image stays constant
    and the mean is preserved; ``image_size`` equal to ``H`` and ``W`` only converts."""
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"`images` must have shape [..., H, W], got shape {images.shape}.")
    _check_image_size(image_size, limit=min(images.shape[-2:]))
    return files.area_downsample(images, image_size)


def omniglot_digests(zip_path: str | os.PathLike) -> dict[str, dict[str, dict]]:
    """The content digests of an ``images_<split>.zip``: ``{split: {alphabet: {"num_characters",
    "num_images", "sha256"}}}`` with ``split`` from the zip's top folder (``images_<split>/``)
    and ``sha256`` the digest defined in ``dfn_jax.data._omniglot_files`` (over the decoded ink
    bitmaps and the paths relative to the alphabet folder). ``omniglot_digests.json`` is this
    for ``images_background.zip`` and ``images_evaluation.zip``, merged."""
    path = pathlib.Path(zip_path)
    with _open_zip(path) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        top = next((t for t in sorted(tops) if t.startswith("images_")), None)
        if top is None:
            raise ValueError(f"{str(path)!r} has no images_<split>/ folder.")
        digests = {}
        for alphabet, members in sorted(files.image_members(archive, top).items()):
            _, sha256 = files.read_alphabet(archive, members, str(path))
            digests[alphabet] = {
                "num_characters": len({m.character for m in members}),
                "num_images": len(members),
                "sha256": sha256,
            }
    return {top.removeprefix("images_"): digests}


@functools.cache
def _expected_digests() -> dict[str, dict[str, dict]]:
    text = importlib.resources.files("dfn_jax.data").joinpath(_DIGESTS_FILE).read_text("utf-8")
    return json.loads(text)


def _check_image_size(image_size, *, limit: int = files.IMAGE_SIZE) -> int:
    if not is_int(image_size) or not 1 <= image_size <= limit:
        raise ValueError(
            f"`image_size` must be an int in 1..{limit} (the images are {limit}x{limit}; "
            f"{limit} keeps them as they are), got {image_size!r}."
        )
    return int(image_size)


def _check_flag(value, *, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return value


def _open_zip(path: pathlib.Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{str(path)!r} is not a readable zip ({error}); it may be corrupt or incomplete: "
            "replace it with a fresh copy."
        ) from None


# ------------------------------------------------------------------------------------------------
# Sources.


def _download_zip(filename: str, cache_dir: pathlib.Path) -> pathlib.Path | str:
    """Downloads ``filename`` into ``cache_dir``: sha256-checked where the original's is known
    (``ORIGINAL_SHA256``), else by the zip's CRCs (the content digest runs at load)."""
    url = OMNIGLOT_BASE_URL.rstrip("/") + "/" + _DOWNLOAD_PATHS[filename]

    def crcs_ok(path: pathlib.Path) -> str | None:
        with _open_zip(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"member {bad!r} has a bad CRC"

    expected = ORIGINAL_SHA256.get(filename)
    check = crcs_ok if expected is None else None
    result = _download.download(
        url, cache_dir / filename, sha256=expected, check=check, logger=_LOG
    )
    return result if isinstance(result, pathlib.Path) else f"download failed: {result}"


def _from_tfds(
    data_dir: pathlib.Path, split: str, alphabets: tuple[str, ...] | None, image_size: int
) -> OmniglotSplit | str:
    """The split from a prepared TFDS ``omniglot``, or why it cannot be read."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        return f"tensorflow_datasets is not importable ({error})"
    where = f"tfds.data_source('omniglot', data_dir={os.fspath(data_dir)!r})"
    try:
        source = tfds.data_source(
            "omniglot", split=_TFDS_SPLITS[split], data_dir=os.fspath(data_dir), download=False
        )
        names = list(source.dataset_info.features["alphabet"].names)
        records = [source[i] for i in range(len(source))]
    except Exception as error:  # noqa: BLE001 - any TFDS failure means "not available here".
        return f"{where} failed: {error!r}"
    if not records:
        return f"the TFDS omniglot {_TFDS_SPLITS[split]!r} split is empty"
    keys = [(names[int(r["alphabet"])], int(r["alphabet_char_id"])) for r in records]
    order = sorted(range(len(records)), key=lambda i: keys[i])  # stable: TFDS order in a class
    if alphabets is not None:
        _check_subset(alphabets, sorted({k[0] for k in keys}), f"{where} ({split})")
        order = [i for i in order if keys[i][0] in alphabets]
    images = np.stack([np.asarray(records[i]["image"]) for i in order])
    if images.shape[1:3] != (files.IMAGE_SIZE, files.IMAGE_SIZE) or images.dtype != np.uint8:
        raise ValueError(
            f"{where} gave images of shape {images.shape[1:]} and dtype {images.dtype}, "
            "expected [105, 105] or [105, 105, 3] uint8."
        )
    ink = (images if images.ndim == 3 else images[..., 0]) < 128
    character_names = [f"{a}/character{c + 1:02d}" for a, c in (keys[i] for i in order)]
    return _assemble(
        split, files.area_downsample(ink, image_size), character_names, np.full(len(order), -1)
    )


def _locate(
    filename: str,
    *,
    omniglot_dir: pathlib.Path | None,
    cache_dir: pathlib.Path | None,
    download: bool,
    tfds: tuple[pathlib.Path | None, Callable[[], OmniglotSplit | str]] | None = None,
) -> pathlib.Path | OmniglotSplit:
    """The zip's path from the first source that has it (or the split from TFDS)."""
    cache_dir = cache_dir or default_cache_dir()
    tried = []
    env_dir = os.environ.get("DFN_OMNIGLOT_DIR")
    label = "omniglot_dir"
    if omniglot_dir is None and env_dir:
        omniglot_dir, label = pathlib.Path(env_dir).expanduser(), "DFN_OMNIGLOT_DIR"
    if omniglot_dir is None:
        tried.append("omniglot_dir: not given (and DFN_OMNIGLOT_DIR is not set)")
    elif not omniglot_dir.is_dir():
        tried.append(f"{label}: {str(omniglot_dir)!r} is not a directory")
    elif not (omniglot_dir / filename).is_file():
        tried.append(f"{label}: {str(omniglot_dir)!r} has no {filename}")
    else:
        return omniglot_dir / filename
    if tfds is not None:
        data_dir, load = tfds
        if data_dir is None:
            tried.append("tfds_data_dir: not given")
        else:
            result = load()
            if not isinstance(result, str):
                return result
            tried.append(f"tfds_data_dir: {result}")
    cached = cache_dir / filename
    if cached.is_file():
        return cached
    if not download:
        tried.append(f"cache dir: {str(cached)!r} is not there and download=False")
    else:
        result = _download_zip(filename, cache_dir)
        if not isinstance(result, str):
            return result
        tried.append(f"cache dir {str(cache_dir)!r}: {result}")
    raise OmniglotNotFoundError(_not_found_message(filename, tried, cache_dir, download))


def _not_found_message(
    filename: str, tried: list[str], cache_dir: pathlib.Path, download: bool
) -> str:
    url = OMNIGLOT_BASE_URL.rstrip("/") + "/" + _DOWNLOAD_PATHS[filename]
    lines = [f"Could not find the Omniglot file {filename}. Tried, in order:"]
    lines += [f"  - {item}" for item in tried]
    lines += [
        "Supply it in one of these ways:",
        "  1. a folder holding the original zips (images_background.zip, images_evaluation.zip, "
        "images_background_small1.zip, images_background_small2.zip, all_runs.zip; kept zipped), "
        "as `omniglot_dir=` or the environment variable DFN_OMNIGLOT_DIR;",
        "  2. for the image splits, a TFDS data dir where `omniglot` is prepared (`tfds build "
        "omniglot --data_dir=DIR`), as `tfds_data_dir=`;",
        f"  3. a download (download=True{'' if download else ', currently off'}) into the cache "
        f"dir {str(cache_dir)!r} (set `cache_dir=` or DFN_CACHE_DIR) from {url}; or put the file "
        "there yourself.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Loading.


def _check_subset(wanted: tuple[str, ...], available: Sequence[str], where: str) -> None:
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise ValueError(
            f"`alphabets` names {unknown}, which {where} does not have; it has {list(available)}."
        )


def _alphabet_names(alphabets) -> tuple[str, ...] | None:
    if alphabets is None:
        return None
    if isinstance(alphabets, str):
        alphabets = (alphabets,)
    names = tuple(alphabets)
    if not names or not all(isinstance(a, str) for a in names):
        raise ValueError(
            f"`alphabets` must be None (all) or a non-empty sequence of alphabet names, "
            f"got {alphabets!r}."
        )
    return tuple(sorted(set(names)))


def _assemble(
    split: str, images: np.ndarray, character_names: list[str], drawers: np.ndarray
) -> OmniglotSplit:
    """The split from images in sorted order and each image's ``"Alphabet/characterNN"``."""
    characters = tuple(sorted(set(character_names)))
    alphabets = tuple(sorted({c.split("/")[0] for c in characters}))
    index = {c: i for i, c in enumerate(characters)}
    alphabet_index = {a: i for i, a in enumerate(alphabets)}
    return OmniglotSplit(
        split=split,
        images=images,
        labels=np.asarray([index[c] for c in character_names], np.int32),
        drawers=np.asarray(drawers, np.int32),
        character_alphabet=np.asarray(
            [alphabet_index[c.split("/")[0]] for c in characters], np.int32
        ),
        alphabets=alphabets,
        characters=characters,
    )


def _verify_alphabet(split, alphabet, members, digest, expected, where) -> None:
    entry = expected.get(alphabet)
    if entry is None:
        raise ValueError(
            f"{where}: the {split!r} split has no alphabet {alphabet!r} in {_DIGESTS_FILE}; "
            "is this the original Omniglot zip?"
        )
    found = {
        "num_characters": len({m.character for m in members}),
        "num_images": len(members),
        "sha256": digest,
    }
    if found != entry:
        differences = ", ".join(
            f"{key} {found[key]} (expected {entry[key]})"
            for key in entry
            if found[key] != entry[key]
        )
        raise ValueError(
            f"{where}: the {split!r} alphabet {alphabet!r} does not match the original Omniglot "
            f"images: {differences}. The zip may be corrupt or incomplete; replace it with a "
            "fresh copy (or pass verify=False to use it anyway)."
        )


def _load_zip(
    path: pathlib.Path,
    split: str,
    alphabets: tuple[str, ...] | None,
    image_size: int,
    verify: bool,
) -> OmniglotSplit:
    where = str(path)
    if verify and path.name in ORIGINAL_SHA256:
        found = files.file_sha256(path)
        if found != ORIGINAL_SHA256[path.name]:
            raise ValueError(
                f"{where}: sha256 {found} differs from the original's "
                f"{ORIGINAL_SHA256[path.name]}; the zip may be corrupt or incomplete: replace it "
                "with a fresh copy (or pass verify=False to use it anyway)."
            )
    top = f"images_{split}"
    with _open_zip(path) as archive:
        by_alphabet = files.image_members(archive, top)
        if not by_alphabet:
            raise ValueError(
                f"{where} has no images named {top}/<Alphabet>/characterNN/<id>_<DD>.png; is it "
                f"the original {path.name}?"
            )
        available = sorted(by_alphabet)
        expected = _expected_digests()[split] if verify and split in DIGEST_SPLITS else None
        if alphabets is None:
            alphabets = tuple(available)
            if expected is not None and sorted(expected) != available:
                missing = sorted(set(expected) - set(available))
                extra = sorted(set(available) - set(expected))
                raise ValueError(
                    f"{where}: the {split!r} split should hold the {len(expected)} original "
                    f"alphabets; missing {missing}, unexpected {extra}. The zip may be "
                    "incomplete; replace it with a fresh copy."
                )
        else:
            _check_subset(alphabets, available, where)
        images, names, drawers = [], [], []
        for alphabet in alphabets:
            members = by_alphabet[alphabet]
            ink, digest = files.read_alphabet(archive, members, where)
            if expected is not None:
                _verify_alphabet(split, alphabet, members, digest, expected, where)
            images.append(files.area_downsample(ink, image_size))
            names += [f"{alphabet}/{m.character}" for m in members]
            drawers += [m.drawer for m in members]
    return _assemble(split, np.concatenate(images), names, np.asarray(drawers))


def load_omniglot(
    split: str,
    *,
    alphabets: Sequence[str] | None = None,
    omniglot_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    verify: bool = True,
    download: bool = False,
    tfds_data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> OmniglotSplit:
    """The Omniglot drawings of ``split``, ``images float32 [N, S, S]`` with ink 1.

    Args:
      split: "background", "evaluation", "background_small1" or "background_small2".
      alphabets: names of the alphabets to load (e.g. ``("Greek", "Latin")``); ``None``, all.
        Labels then number the characters of these alphabets only.
      omniglot_dir: folder with the original zips; ``None`` reads ``DFN_OMNIGLOT_DIR``.
      image_size: S, the side of the returned images (1..105): exact area averaging of the
        105x105 originals (module docstring); 105 keeps them.
      verify: check the content against the originals (module docstring) before returning it.
      download: download a missing zip into the cache dir.
      tfds_data_dir: a TFDS data dir where ``omniglot`` is prepared.
      cache_dir: the download cache; ``None`` means ``default_cache_dir()``.

    Raises:
      OmniglotNotFoundError: no source has the zip (the message says how to supply it).
      ValueError: a bad argument, or a zip that is there but corrupt, incomplete or not the
        original (the message names the split and the alphabet).
    """
    choice(split, SPLITS, name="split")
    image_size = _check_image_size(image_size)
    verify = _check_flag(verify, name="verify")
    download = _check_flag(download, name="download")
    names = _alphabet_names(alphabets)
    tfds_dir = optional_path(tfds_data_dir, name="tfds_data_dir")
    result = _locate(
        ZIP_FILES[split],
        omniglot_dir=optional_path(omniglot_dir, name="omniglot_dir"),
        cache_dir=optional_path(cache_dir, name="cache_dir"),
        download=download,
        tfds=(tfds_dir, lambda: _from_tfds(tfds_dir, split, names, image_size)),
    )
    if isinstance(result, OmniglotSplit):
        return result
    return _load_zip(result, split, names, image_size, verify)


def load_official_runs(
    *,
    omniglot_dir: str | os.PathLike | None = None,
    image_size: int = 28,
    verify: bool = True,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> OmniglotRuns:
    """The 20 official runs of 20-way one-shot classification from ``all_runs.zip``: in each run
    one training image of each of 20 characters of one evaluation alphabet, and 20 test images
    (other drawers) to match to them; see :class:`OmniglotRuns`. Arguments, sources and errors as
    in :func:`load_omniglot` (no TFDS source; ``verify`` checks the file's sha256)."""
    image_size = _check_image_size(image_size)
    verify = _check_flag(verify, name="verify")
    download = _check_flag(download, name="download")
    path = _locate(
        RUNS_FILE,
        omniglot_dir=optional_path(omniglot_dir, name="omniglot_dir"),
        cache_dir=optional_path(cache_dir, name="cache_dir"),
        download=download,
    )
    if verify:
        found = files.file_sha256(path)
        if found != ORIGINAL_SHA256[RUNS_FILE]:
            raise ValueError(
                f"{str(path)!r}: sha256 {found} differs from the original's "
                f"{ORIGINAL_SHA256[RUNS_FILE]}; the zip may be corrupt or incomplete: replace it "
                "with a fresh copy (or pass verify=False to use it anyway)."
            )
    with _open_zip(path) as archive:
        names, training, test, answers = files.read_runs(archive, str(path))
    return OmniglotRuns(
        runs=names,
        training=files.area_downsample(training, image_size),
        test=files.area_downsample(test, image_size),
        answers=answers,
    )


def official_run_indices(runs: OmniglotRuns, data: OmniglotSplit) -> tuple[np.ndarray, np.ndarray]:
    """Where the official runs' images are in the evaluation split: ``(training, test)``, both
    ``int64 [R, T]`` rows of ``data`` with ``data.images[training] == runs.training`` (and
    likewise for ``test``), so that ``data.labels``, ``data.drawers`` and the alphabets of those
    rows say whose drawing of which character each image is. Images are matched exactly, so
    ``runs`` and ``data`` must be read at one image size.

    Raises:
      ValueError: different image sizes, or an image of the runs that ``data`` does not hold
        (named by run and file; e.g. ``data`` is another split or a subset of alphabets).
    """
    if runs.training.shape[-1] != data.image_size:
        raise ValueError(
            f"`runs` ({runs.training.shape[-1]}x{runs.training.shape[-1]}) and `data` "
            f"({data.image_size}x{data.image_size}) must be read at one image size."
        )
    rows = {image.tobytes(): row for row, image in enumerate(data.images)}

    def find(images: np.ndarray, folder: str, stem: str) -> np.ndarray:
        found = np.zeros(images.shape[:2], np.int64)
        for (r, t), _ in np.ndenumerate(found):
            row = rows.get(images[r, t].tobytes())
            if row is None:
                raise ValueError(
                    f"{runs.runs[r]}/{folder}/{stem}{t + 1:02d}.png is not an image of the "
                    f"{data.split!r} split given ({len(data.alphabets)} alphabets)."
                )
            found[r, t] = row
        return found

    return find(runs.training, "training", "class"), find(runs.test, "test", "item")


# ------------------------------------------------------------------------------------------------
# Alphabet subsets.


def select_alphabets(data: OmniglotSplit, alphabets: Sequence[str]) -> OmniglotSplit:
    """The drawings of ``alphabets`` only, with characters and labels renumbered (sorted order
    kept)."""
    names = _alphabet_names(alphabets)
    if names is None:
        raise ValueError("`alphabets` must name at least one alphabet, got None.")
    _check_subset(names, data.alphabets, f"the {data.split!r} split")
    wanted = np.isin(np.asarray(data.alphabets), names)
    keep_characters = wanted[data.character_alphabet]
    keep = keep_characters[data.labels]
    characters = [data.characters[label] for label in data.labels[keep]]
    return _assemble(data.split, data.images[keep], characters, data.drawers[keep])


def split_background_alphabets(
    data: OmniglotSplit, *, num_val_alphabets: int, seed: int = 0
) -> tuple[OmniglotSplit, OmniglotSplit]:
    """``(train, val)``: ``num_val_alphabets`` whole alphabets of ``data`` (usually the
    background split) held out for validation, the rest for training.

    The held-out alphabets are the first ``num_val_alphabets`` when the alphabets are ordered by
    ``sha256(f"{seed}/{name}")``: deterministic, independent of NumPy's generators and of which
    other alphabets were loaded.
    """
    if not is_int(num_val_alphabets) or not 1 <= num_val_alphabets < len(data.alphabets):
        raise ValueError(
            f"`num_val_alphabets` must be an int in 1..{len(data.alphabets) - 1} (the split has "
            f"{len(data.alphabets)} alphabets), got {num_val_alphabets!r}."
        )
    if not is_int(seed):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")
    ranked = sorted(
        data.alphabets, key=lambda name: hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()
    )
    held = ranked[:num_val_alphabets]
    kept = [a for a in data.alphabets if a not in held]
    return select_alphabets(data, kept), select_alphabets(data, held)


def _main(argv: list[str]) -> None:
    """``python -m dfn_jax.data.omniglot DIR``: prints ``omniglot_digests.json`` for the
    ``images_background.zip`` and ``images_evaluation.zip`` in ``DIR``."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m dfn_jax.data.omniglot DIR > omniglot_digests.json")
    digests: dict = {
        "_about": "Per split and alphabet: character and image counts and the sha256 content "
        "digest defined in dfn_jax.data._omniglot_files; written by "
        "`python -m dfn_jax.data.omniglot DIR`."
    }
    for split in DIGEST_SPLITS:
        digests |= omniglot_digests(pathlib.Path(argv[0]) / ZIP_FILES[split])
    print(json.dumps(digests, indent=1, sort_keys=True))


if __name__ == "__main__":
    _main(sys.argv[1:])
