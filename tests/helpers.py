"""Helpers shared by the test modules (no test module imports another): the repository root and
the Moving MNIST experiment shrunk to seconds, as a config and as command-line flags."""

import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

from dfn_jax.training.config import override
from experiments.configs import moving_mnist as mm_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python *args`` from the repository root on the CPU, without the suite's fake devices
    (``XLA_FLAGS``), with ``env`` added to the environment; asserts it exits with 0."""
    environ = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    environ.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def tiny_config(**overrides):
    """The embedded-data config shrunk to seconds: 32x32 frames, 3 in / 3 out, 2 sequences."""
    config = mm_config.get_config("shapes")
    config.mesh.data = 1
    config.batch_size = 2
    config.num_train_steps = 3
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 0
    config.num_eval_sequences = 4
    config.eval_batch_size = 2
    config.num_figure_sequences = 1
    config.data.image_size = 32
    config.model.encoder_features = (4, 4, 4, 4, 4)
    config.model.decoder_features = (4, 4, 4, 4)
    config.model.hidden_features = 4
    config.model.head_features = 4
    config.model.num_input_frames = 3
    config.model.num_output_frames = 3
    return override(config, overrides)


# tiny_config as command-line overrides (for subprocess runs of experiments.main).
TINY_FLAGS = [
    "--config=experiments/configs/moving_mnist.py:shapes",
    "--config.mesh.data=1",
    "--config.batch_size=2",
    "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=1",
    "--config.eval_every_steps=0",
    "--config.num_eval_sequences=4",
    "--config.eval_batch_size=2",
    "--config.num_figure_sequences=1",
    "--config.data.image_size=32",
    "--config.model.encoder_features=(4,4,4,4,4)",
    "--config.model.decoder_features=(4,4,4,4)",
    "--config.model.hidden_features=4",
    "--config.model.head_features=4",
    "--config.model.num_input_frames=3",
    "--config.model.num_output_frames=3",
]


def write_cifar10_binary(folder: pathlib.Path, sizes: dict[str, int], seed: int = 0) -> dict:
    """Writes CIFAR-10 binary-version batch files (``{batch}.bin``: one label byte and 3,072
    planar pixel bytes per record) of random content into ``folder``; returns ``{batch:
    (images [N, 32, 32, 3], labels [N])}``."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in sizes.items():
        images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
        labels = rng.integers(0, 10, n, np.uint8)
        planar = images.transpose(0, 3, 1, 2).reshape(n, 3072)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], planar], 1).tobytes())
        batches[name] = (images, labels)
    return batches


_real_urlopen = urllib.request.urlopen


def offline_data(monkeypatch, tmp_path: pathlib.Path, folder_variable: str) -> None:
    """For a data loader's tests: no user folder (``folder_variable`` unset), a fresh download
    cache under ``tmp_path``, and no network (``file:`` URLs still open)."""
    monkeypatch.delenv(folder_variable, raising=False)
    monkeypatch.setenv("DFN_CACHE_DIR", str(tmp_path / "default_cache"))

    def no_network(url, *args, **kwargs):
        if str(url).startswith("file:"):
            return _real_urlopen(url, *args, **kwargs)
        raise urllib.error.URLError(f"network disabled in tests ({url})")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
