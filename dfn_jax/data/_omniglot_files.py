"""The Omniglot zips read in memory: the member layout, PNG decoding to ink bitmaps, the content
digest of one alphabet, the official one-shot runs, and the exact area-averaging downsample.

Nothing is extracted: members are read with ``zipfile`` into memory and only their names, parsed
against the layouts below, decide where their images go.

* ``images_<split>.zip``: ``images_<split>/<Alphabet>/characterNN/<id>_<DD>.png``, where ``<id>``
  numbers the character over the whole dataset and ``DD`` (01..20) its drawer;
* ``all_runs.zip``: ``runRR/class_labels.txt``, ``runRR/training/classCC.png`` and
  ``runRR/test/itemII.png``; each line of ``class_labels.txt`` reads
  ``runRR/test/itemII.png runRR/training/classCC.png`` (test item, its correct training image).

Every image is a 105x105 PNG (mode ``"1"``: white background, black ink). :func:`decode_ink`
turns it into a ``bool [105, 105]`` bitmap with **ink True**: for mode ``"1"`` the black
pixels; for any other mode the pixels darker than 128 after conversion to grey (``"L"``).

:func:`alphabet_digest` is the content digest stored in ``omniglot_digests.json``: the sha256 of,
for each image of the alphabet in the order of its path relative to the alphabet folder
(``characterNN/<id>_<DD>.png``, sorted as Python strings), that path in UTF-8, a newline
(``b"\\n"``), then the image's ink bitmap as 11,025 bytes (row-major, 1 = ink, 0 = background).
It depends on the decoded pixels and the names only, not on how the zip was packed.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import re
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
from PIL import Image

IMAGE_SIZE = 105
MAX_MEMBER_BYTES = 1 << 20
"""Members larger than this are refused unread (an Omniglot PNG is under 2 kB)."""

_RUN_LINE = re.compile(
    r"^(?:(?P<run_a>run\d+)/)?test/item(?P<item>\d+)\.png\s+"
    r"(?:(?P<run_b>run\d+)/)?training/class(?P<cls>\d+)\.png$"
)
_RUN_IMAGE = re.compile(r"^(?P<run>run\d+)/(?P<kind>training/class|test/item)(?P<num>\d+)\.png$")


class ImageMember(NamedTuple):
    """One drawing in an ``images_<split>.zip``."""

    alphabet: str
    relative_path: str  # "characterNN/<id>_<DD>.png", the digest's sort key
    character: str  # "characterNN"
    drawer: int  # DD - 1, in 0..19
    info: zipfile.ZipInfo


def image_members(archive: zipfile.ZipFile, top: str) -> dict[str, list[ImageMember]]:
    """The drawings under ``top/<Alphabet>/characterNN/``, by alphabet, each list sorted by
    ``relative_path``. Directory entries and names outside that layout are ignored."""
    pattern = re.compile(
        rf"^{re.escape(top)}/(?P<alphabet>[^/]+)/(?P<character>character\d+)/"
        r"(?P<file>\d+_(?P<drawer>\d+)\.png)$"
    )
    by_alphabet: dict[str, list[ImageMember]] = {}
    for info in archive.infolist():
        match = pattern.match(info.filename)
        if match is None or info.is_dir():
            continue
        relative = f"{match['character']}/{match['file']}"
        member = ImageMember(
            match["alphabet"], relative, match["character"], int(match["drawer"]) - 1, info
        )
        by_alphabet.setdefault(member.alphabet, []).append(member)
    for members in by_alphabet.values():
        members.sort(key=lambda m: m.relative_path)
    return by_alphabet


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    """A member's bytes; a bad CRC or a broken stream is a ``ValueError`` naming the member."""
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(
            f"{where}: member {info.filename!r} claims {info.file_size} bytes; an Omniglot "
            "image is a few kB. The zip is corrupt or not an Omniglot archive."
        )
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(
            f"{where}: cannot read {info.filename!r} ({error}); the zip may be corrupt or "
            "incomplete: replace it with a fresh copy."
        ) from None


def decode_ink(data: bytes, where: str) -> np.ndarray:
    """``bool [105, 105]``, True where there is ink, of one Omniglot PNG's bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(
                    f"{where}: the image is {image.size[0]}x{image.size[1]}, expected "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE}."
                )
            if image.mode == "1":
                return ~np.asarray(image)
            return np.asarray(image.convert("L")) < 128
    except (OSError, SyntaxError, zlib.error, Image.DecompressionBombError) as error:
        raise ValueError(f"{where}: not a readable PNG ({error}).") from None


def alphabet_digest(relative_paths: list[str], ink: np.ndarray) -> str:
    """The content digest (module docstring) of an alphabet's drawings: ``relative_paths`` in
    sorted order and their ink bitmaps ``[n, 105, 105]`` (bool or 0/1 integers)."""
    digest = hashlib.sha256()
    bitmaps = np.ascontiguousarray(ink, dtype=np.uint8)
    for path, bitmap in zip(relative_paths, bitmaps, strict=True):
        digest.update(path.encode("utf-8") + b"\n")
        digest.update(bitmap.tobytes())
    return digest.hexdigest()


def read_alphabet(
    archive: zipfile.ZipFile, members: list[ImageMember], where: str
) -> tuple[np.ndarray, str]:
    """The alphabet's ink bitmaps ``bool [n, 105, 105]`` (in ``members`` order) and their
    :func:`alphabet_digest`."""
    ink = np.empty((len(members), IMAGE_SIZE, IMAGE_SIZE), bool)
    for i, member in enumerate(members):
        name = f"{where}:{member.info.filename}"
        ink[i] = decode_ink(read_member(archive, member.info, where), name)
    return ink, alphabet_digest([m.relative_path for m in members], ink)


def read_runs(
    archive: zipfile.ZipFile, where: str
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """The runs of ``all_runs.zip``: names ``("run01", ...)``, training and test ink bitmaps
    ``bool [R, T, 105, 105]`` (``training[r, c]`` is ``classCC.png`` with CC = c + 1, ``test[r,
    i]`` is ``itemII.png`` with II = i + 1) and ``answers int32 [R, T]``: the index ``c`` of the
    training image of test item ``i``'s character."""
    images: dict[str, dict[str, dict[int, zipfile.ZipInfo]]] = {}
    labels: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename.endswith("/class_labels.txt"):
            labels[info.filename.split("/")[0]] = info
        elif match := _RUN_IMAGE.match(info.filename):
            run = images.setdefault(match["run"], {"training": {}, "test": {}})
            run[match["kind"].split("/")[0]][int(match["num"]) - 1] = info
    if not labels:
        raise ValueError(f"{where}: no runNN/class_labels.txt; is this all_runs.zip?")
    names = tuple(sorted(labels))
    training, test, answers = [], [], []
    for run in names:
        run_answers = _parse_class_labels(read_member(archive, labels[run], where), run, where)
        trials = len(run_answers)
        kinds = images.get(run, {"training": {}, "test": {}})
        for kind, prefix in (("training", "class"), ("test", "item")):
            if sorted(kinds[kind]) != list(range(trials)):
                raise ValueError(
                    f"{where}: {run}/{kind}/ should hold {prefix}01.png..{prefix}{trials:02d}.png "
                    f"({trials} trials in class_labels.txt), found "
                    f"{[i + 1 for i in sorted(kinds[kind])]}."
                )
        for kind, out in (("training", training), ("test", test)):
            infos = [kinds[kind][i] for i in range(trials)]
            bitmaps = [
                decode_ink(read_member(archive, info, where), f"{where}:{info.filename}")
                for info in infos
            ]
            out.append(np.stack(bitmaps))
        answers.append(run_answers)
    if len({a.shape for a in answers}) != 1:
        raise ValueError(
            f"{where}: the runs have different numbers of trials "
            f"{[len(a) for a in answers]}; expected the same in every run."
        )
    return names, np.stack(training), np.stack(test), np.stack(answers)


def _parse_class_labels(data: bytes, run: str, where: str) -> np.ndarray:
    """``answers int32 [T]`` of one ``class_labels.txt``: ``answers[item - 1] = class - 1``."""
    lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    pairs = []
    for line in lines:
        match = _RUN_LINE.match(line)
        if match is None or {match["run_a"], match["run_b"]} - {None, run}:
            raise ValueError(
                f"{where}: {run}/class_labels.txt has the line {line!r}; expected "
                f"'{run}/test/itemII.png {run}/training/classCC.png'."
            )
        pairs.append((int(match["item"]) - 1, int(match["cls"]) - 1))
    trials = len(pairs)
    items = sorted(item for item, _ in pairs)
    if items != list(range(trials)) or not all(0 <= c < trials for _, c in pairs):
        raise ValueError(
            f"{where}: {run}/class_labels.txt should pair item01..item{trials:02d} each once with "
            f"a class in class01..class{trials:02d}, got items {[i + 1 for i in items]} and "
            f"classes {sorted(c + 1 for _, c in pairs)}."
        )
    pairs = dict(pairs)
    return np.asarray([pairs[i] for i in range(trials)], np.int32)


def _box_band(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and integer weights ``[out_size, T]`` of the area-averaging filter along
    one axis. Output pixel ``i`` covers ``[i * in_size, (i + 1) * in_size)`` and input pixel ``j``
    covers ``[j * out_size, (j + 1) * out_size)`` (both in units of ``1 / out_size`` input
    pixels); the weight is their overlap, so each row of weights sums to ``in_size``."""
    low = np.arange(out_size) * in_size
    first = low // out_size
    taps = int((-(-(low + in_size) // out_size) - first).max())
    index = first[:, None] + np.arange(taps)
    overlap = np.minimum(low[:, None] + in_size, (index + 1) * out_size) - np.maximum(
        low[:, None], index * out_size
    )
    return np.minimum(index, in_size - 1), np.maximum(overlap, 0).astype(np.float32)


def area_downsample(images: np.ndarray, size: int, *, chunk: int = 1024) -> np.ndarray:
    """``float32 [..., size, size]``: each output pixel the mean of ``images [..., H, W]`` over
    its footprint (an exact box filter: input pixels partly inside count by the covered
    fraction). Bool bitmaps are summed in exact integer arithmetic (``uint16``), so a constant
    image stays exactly constant and the mean is preserved up to one rounding per pixel."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return np.asarray(images, np.float32)
    exact = images.dtype == bool and height * width < 1 << 16
    dtype = np.uint16 if exact else np.float32
    rows, row_weights = _box_band(height, size)
    cols, col_weights = _box_band(width, size)
    row_weights, col_weights = row_weights.astype(dtype), col_weights.astype(dtype)
    flat = images.reshape(-1, height, width)
    out = np.empty((len(flat), size, size), np.float32)
    for start in range(0, len(flat), chunk):
        x = flat[start : start + chunk]
        x = x.view(np.uint8) if exact else x.astype(np.float32)
        y = np.zeros((len(x), size, width), dtype)
        for t in range(rows.shape[1]):
            y += row_weights[:, t, None] * x[:, rows[:, t], :]
        z = np.zeros((len(x), size, size), dtype)
        for t in range(cols.shape[1]):
            z += col_weights[:, t] * y[:, :, cols[:, t]]
        out[start : start + chunk] = z / np.float32(height * width)
    return out.reshape(*images.shape[:-2], size, size)


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
