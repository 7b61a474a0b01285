"""Test-suite settings: eight CPU devices and strict rank promotion (equinox-style), so that
sharding code paths run and silent broadcasting bugs fail loudly; fixtures for the shared data."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from tests.helpers import REPO_ROOT  # noqa: E402

# Set through JAX's config, not an XLA_FLAGS default that a user's environment would silently
# override (and that subprocesses would inherit).
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The shared offline datasets (`DFN_DATA_DIR`, default `../shared/data` beside the repo).

    Tests that need real data skip when it is absent; CI sets it, so they run there.
    """
    path = pathlib.Path(os.environ.get("DFN_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set DFN_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def mnist_dir(shared_data_dir) -> pathlib.Path:
    path = shared_data_dir / "mnist"
    if not path.is_dir():
        pytest.skip(f"MNIST IDX files not found at {path}")
    return path


@pytest.fixture(scope="session")
def omniglot_dir(shared_data_dir) -> pathlib.Path:
    path = shared_data_dir / "omniglot"
    if not (path / "images_background.zip").is_file():
        pytest.skip(f"Omniglot zips not found at {path}")
    return path
