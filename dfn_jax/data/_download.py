"""The download cache every file-based dataset shares: where it lives, and one checked download.

A download is written to a temporary file in the cache dir, checked (``check`` returns ``None``
when the file is good, else a reason), and only then renamed into place, so an interrupted or
wrong download never leaves a file that a later run would trust. Failures are returned as a
string saying why, so that a loader can try its next source and list every reason when none works.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


def default_cache_dir(dataset: str) -> pathlib.Path:
    """``$DFN_CACHE_DIR/<dataset>``, else ``$XDG_CACHE_HOME/dfn_jax/<dataset>``, else
    ``~/.cache/dfn_jax/<dataset>``."""
    root = os.environ.get("DFN_CACHE_DIR")
    if root:
        return pathlib.Path(root).expanduser() / dataset
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "dfn_jax" / dataset


def download(
    url: str,
    destination: pathlib.Path,
    *,
    sha256: str | None = None,
    check: Callable[[pathlib.Path], str | None] | None = None,
    logger: logging.Logger | None = None,
) -> pathlib.Path | str:
    """Downloads ``url`` to ``destination`` (created with its folder); returns the path, or why
    it failed. ``sha256``: the bytes' expected digest; ``check``: any further check of the
    downloaded file (``None`` when good, else a reason)."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create the cache dir {str(destination.parent)!r}: {error}"
    tmp_path = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=destination.parent, prefix=destination.name + ".", suffix=".tmp", delete=False
        ) as tmp:
            tmp_path = pathlib.Path(tmp.name)
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    tmp.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            return f"{url}: sha256 {digest.hexdigest()} differs from the expected {sha256}"
        reason = check(tmp_path) if check is not None else None
        if reason is not None:
            return f"{url}: {reason}"
        os.replace(tmp_path, destination)
        tmp_path = None
        if logger is not None:
            logger.info("Downloaded %s to %s", url, destination)
        return destination
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return f"{url}: {reason}"
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
