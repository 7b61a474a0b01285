"""Test-suite settings: several fake CPU devices and strict rank promotion (equinox-style), so that
sharding code paths run and silent broadcasting bugs fail loudly."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


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
