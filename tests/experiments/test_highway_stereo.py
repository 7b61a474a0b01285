"""Highway-driving and stereo DFNs: exact parameter counts, shapes, driving-data loaders and
stand-ins, and one end-to-end run of each experiment at toy size."""

import dataclasses
import json
import logging

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from dfn_jax.data import driving
from dfn_jax.models import (
    HighwayDFN,
    HighwayDFNConfig,
    StereoDFN,
    StereoDFNConfig,
    VideoPrediction,
    count_params,
)
from experiments import main
from experiments.configs import highway as highway_config
from experiments.configs import stereo as stereo_config

SIZE = 32  # Toy frame size; the stand-in renderer compiles once per size and frame count.
TINY_GENERATOR = dict(
    encoder_features=(4, 4, 4, 4),
    decoder_features=(4, 4, 4),
    head_features=4,
    image_size=SIZE,
)


def _model(cls, config, seed: int = 0):
    """A model with He-uniform kernels (the authors' gain) and zero biases drawn by NumPy: eager
    ``nnx.Rngs`` initialisation compiles a sampler per kernel shape, seconds on CPU."""
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0))))

    def draw(path, leaf):
        if path[-1] == "bias":  # Tied [F] or untied [H, W, F] biases.
            return jnp.zeros(leaf.shape, leaf.dtype)
        limit = np.sqrt(3.0 / np.prod(leaf.shape[:-1]))  # variance 1 / fan_in
        return jnp.asarray(rng.uniform(-limit, limit, leaf.shape), leaf.dtype)

    return nnx.merge(graphdef, nnx.map_state(draw, state))


def _abstract_count(cls, config) -> int:
    return count_params(nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0))))


def _frames(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


# -- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,config,expected",
    [
        (HighwayDFN, HighwayDFNConfig(), 368_122),
        (HighwayDFN, HighwayDFNConfig(dynamic_filter=False), 368_245),
        (StereoDFN, StereoDFNConfig(), 464_494),
        (StereoDFN, StereoDFNConfig(dynamic_filter=False), 464_509),
    ],
)
def test_paper_parameter_counts(cls, config, expected):
    assert _abstract_count(cls, config) == expected


@pytest.mark.parametrize(
    "config_module,variant,expected",
    [
        (highway_config, "paper", 368_122),
        (highway_config, "baseline", 368_245),
        (stereo_config, "paper", 464_494),
        (stereo_config, "baseline", 464_509),
    ],
)
def test_experiment_configs_build_the_paper_models(config_module, variant, expected):
    experiment = main.make_experiment(config_module.get_config(variant))  # Loads no data.
    model = nnx.eval_shape(lambda: experiment.build_model(nnx.Rngs(0)))
    assert count_params(model) == expected


def test_untied_biases_sit_where_the_counts_say():
    highway = nnx.eval_shape(lambda: HighwayDFN(HighwayDFNConfig(), rngs=nnx.Rngs(0)))
    assert highway.generator.encoder[0].bias.shape == (64, 64, 32)  # First conv, full size.
    stereo = nnx.eval_shape(lambda: StereoDFN(StereoDFNConfig(), rngs=nnx.Rngs(0)))
    assert stereo.generator.encoder[4].bias.shape == (32, 32, 128)  # Fifth conv, half size.
    assert highway.generator.recurrence is not None and stereo.generator.recurrence is None


@pytest.fixture(scope="module")
def tiny_highway():
    return _model(HighwayDFN, HighwayDFNConfig(**TINY_GENERATOR))


def test_highway_shapes_and_closed_loop_predict(tiny_highway):
    frames = _frames((2, 6, SIZE, SIZE, 1))
    out = nnx.jit(lambda m, f: m(f))(tiny_highway, frames)
    assert isinstance(out, VideoPrediction)
    assert out.frames.shape == (2, 3, SIZE, SIZE, 1)
    assert out.filters.shape == (2, 3, SIZE, SIZE, 121)
    np.testing.assert_allclose(np.sum(out.filters, axis=-1), 1.0, atol=1e-5)
    # __call__ is the closed-loop rollout from the 3 observed frames.
    rollout = nnx.jit(HighwayDFN.predict, static_argnums=2)(tiny_highway, frames[:, :3], 3)
    np.testing.assert_allclose(rollout, out.frames, atol=1e-6)
    # Later frames of the clip are never read.
    changed = frames.at[:, 3:].set(0.0)
    np.testing.assert_allclose(nnx.jit(lambda m, f: m(f))(tiny_highway, changed).frames, out.frames)


def test_highway_baseline_and_bad_inputs():
    model = _model(HighwayDFN, HighwayDFNConfig(dynamic_filter=False, **TINY_GENERATOR))
    out = model(_frames((1, 3, SIZE, SIZE, 1)))
    assert out.frames.shape == (1, 3, SIZE, SIZE, 1) and out.filters is None
    with pytest.raises(ValueError, match="must be 32x32"):
        model(_frames((1, 3, 16, 16, 1)))
    with pytest.raises(ValueError, match="at least num_input_frames = 3"):
        model(_frames((1, 2, SIZE, SIZE, 1)))
    with pytest.raises(ValueError, match="floating point"):
        model(jnp.zeros((1, 3, SIZE, SIZE, 1), jnp.uint8))
    with pytest.raises(ValueError, match="generator_frames"):
        HighwayDFNConfig(generator_frames=4)
    with pytest.raises(ValueError, match="untied_bias_layer"):
        HighwayDFNConfig(untied_bias_layer=7)


def test_stereo_shapes_and_baseline():
    config = StereoDFNConfig(
        encoder_features=(4, 4, 4, 4, 4), decoder_features=(4, 4), head_features=4, image_size=SIZE
    )
    model = _model(StereoDFN, config)
    left = _frames((2, SIZE, SIZE, 1))
    out = model(left)
    assert out.image.shape == (2, SIZE, SIZE, 1) and out.filters.shape == (2, SIZE, SIZE, 13)
    single = model(left[0])
    np.testing.assert_allclose(single.image, out.image[0], atol=1e-6)
    baseline = _model(StereoDFN, dataclasses.replace(config, dynamic_filter=False))
    assert baseline(left).filters is None
    with pytest.raises(ValueError, match="positive odd"):
        StereoDFNConfig(filter_size=12)


# -- data: files ------------------------------------------------------------------------------


def _video(n=12, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_load_video_from_hdf5_layouts(tmp_path, layout):
    video = _video()
    stored = {"nhw": video, "nhwc": video[..., None], "nchw": video[:, None]}[layout]
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["highway_L"] = stored
    frames = driving.load_video(tmp_path / "v.h5")
    assert frames.shape == (12, 8, 8, 1) and frames.dtype == np.float32
    np.testing.assert_allclose(frames[..., 0], video / 255.0, atol=1e-7)
    swapped = driving.load_video(tmp_path / "v.h5", swap_hw=True)
    np.testing.assert_allclose(swapped[..., 0], np.swapaxes(video, 1, 2) / 255.0, atol=1e-7)


def test_load_video_float_ranges(tmp_path):
    video = _video().astype(np.float32)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["unit"] = video / 255.0
        f["grey_levels"] = video
        f["negative"] = video - 300.0
    unit = driving.load_video(tmp_path / "v.h5", dataset="unit")
    np.testing.assert_allclose(driving.load_video(tmp_path / "v.h5", dataset="grey_levels"), unit)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        driving.load_video(tmp_path / "v.h5", dataset="negative")


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        driving.load_video(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        driving.load_video(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["other"] = _video()
        f["rgb"] = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(
        ValueError, match=r"no dataset 'highway_L'; its datasets are \['other', 'rgb'\]"
    ):
        driving.load_video(tmp_path / "v.h5")
    with pytest.raises(ValueError, match=r"grayscale frames of shape .* got \(4, 8, 8, 3\)"):
        driving.load_video(tmp_path / "v.h5", dataset="rgb")
    with pytest.raises(ValueError, match="highway_R"):
        driving.load_stereo(tmp_path / "v.h5", datasets=("other", "highway_R"))
    with h5py.File(tmp_path / "pairs.h5", "w") as f:
        f["highway_L"] = _video(12)
        f["highway_R"] = _video(10)
    with pytest.raises(ValueError, match="same shape"):
        driving.load_stereo(tmp_path / "pairs.h5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no frame images"):
        driving.load_video(tmp_path / "empty")
    with pytest.raises(ValueError, match="subfolders 'left' and 'right'"):
        driving.load_stereo(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "0.png")
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(mixed / "1.png")
    with pytest.raises(ValueError, match="one size"):
        driving.load_video(mixed)


def test_image_folders_sorted_by_name_numbers_as_numbers(tmp_path):
    video = _video(12)
    for side, offset in (("left", 0), ("right", 1)):
        (tmp_path / side).mkdir()
        for i, frame in enumerate(np.roll(video, offset, axis=0)):
            Image.fromarray(frame).convert("RGB").save(tmp_path / side / f"frame_{i}.png")
    frames = driving.load_video(tmp_path / "left")  # frame_2 before frame_10; RGB -> grey.
    np.testing.assert_allclose(frames[..., 0], video / 255.0, atol=1e-7)
    left, right = driving.load_stereo(tmp_path)
    np.testing.assert_allclose(right[..., 0], np.roll(video, 1, axis=0) / 255.0, atol=1e-7)
    assert left.shape == right.shape == (12, 8, 8, 1)


def test_windows_and_tail_split():
    frames = np.arange(100)[:, None, None, None].astype(np.float32)
    train, test = driving.split_tail(frames, test_fraction=0.1)
    assert len(train) == 90 and len(test) == 10 and test[0, 0, 0, 0] == 90
    starts = driving.random_window_starts(
        jax.random.key(0), num_frames_total=90, window=6, batch_size=64
    )
    assert starts.min() >= 0 and starts.max() <= 84
    windows = driving.gather_windows(train, starts, window=6)
    np.testing.assert_array_equal(np.diff(windows[..., 0, 0, 0], axis=1), 1)
    tiles = driving.tiled_windows(test, window=3)
    assert tiles.shape == (3, 3, 1, 1, 1) and tiles[-1, -1, 0, 0, 0] == 98
    with pytest.raises(ValueError, match="no complete window"):
        driving.tiled_windows(test[:2], window=3)
    with pytest.raises(ValueError, match="test_fraction"):
        driving.split_tail(frames, test_fraction=1.5)


# -- data: stand-ins --------------------------------------------------------------------------


def test_highway_standin_is_deterministic_and_moves():
    keys = jax.random.split(jax.random.key(0), 2)
    video = np.asarray(driving.highway_standin_sequences(keys, num_frames=6, image_size=SIZE))
    assert video.shape == (2, 6, SIZE, SIZE, 1) and video.dtype == np.float32
    assert 0.0 <= video.min() and video.max() <= 1.0
    again = driving.highway_standin_sequences(keys[1:], num_frames=6, image_size=SIZE)
    np.testing.assert_array_equal(np.asarray(again)[0], video[1])  # Per key, any batch size.
    assert np.abs(np.diff(video, axis=1)).mean() > 1e-3  # The road comes towards the camera.
    assert not np.allclose(video[0], video[1])
    with pytest.raises(ValueError, match="PRNG keys"):
        driving.highway_standin_sequences(jnp.zeros(3), num_frames=6)


def test_stereo_standin_disparity_explains_the_right_view():
    keys = jax.random.split(jax.random.key(1), 2)
    left, right, disparity = map(np.asarray, driving.stereo_standin_pairs(keys, image_size=SIZE))
    assert left.shape == right.shape == (2, SIZE, SIZE, 1) and disparity.shape == (2, SIZE, SIZE)
    assert disparity.min() >= 0.0 and disparity.max() <= 5.0 + 1e-5
    assert disparity[:, -1].mean() > 4.0 and disparity[:, 0].max() == 0.0  # Ground vs sky.
    # right[y, x] = left[y, x + d]: warping the left view by the disparity explains the right
    # one far better than the left view itself does (exposure differs by up to 3%).
    x = np.arange(SIZE, dtype=np.float32)
    warped = np.stack(
        [
            np.stack([np.interp(x + dr, x, lr) for dr, lr in zip(d, im[..., 0], strict=True)])
            for d, im in zip(disparity, left, strict=True)
        ]
    )
    inner = np.s_[:, :, 6:-6]
    warp_error = np.abs(warped - right[..., 0])[inner].mean()
    copy_error = np.abs(left[..., 0] - right[..., 0])[inner].mean()
    assert warp_error < 0.6 * copy_error, (warp_error, copy_error)


# -- experiments end to end -------------------------------------------------------------------


def _tiny(config, **model):
    config.mesh.data = 1
    config.batch_size = 2
    config.num_train_steps = 2
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.num_eval_sequences = 2
    config.eval_batch_size = 2
    config.num_figure_sequences = 1
    config.data.image_size = SIZE
    for key, value in model.items():
        config.model[key] = value
    return config


def tiny_highway_config(variant="paper"):
    return _tiny(
        highway_config.get_config(variant),
        encoder_features=(4, 4, 4, 4),
        decoder_features=(4, 4, 4),
        head_features=4,
        unroll="1",  # A rolled scan compiles its step once.
        filter_size=3,  # The 11x11 filter's gradient alone takes ~10 s to compile on CPU.
    )


def tiny_stereo_config(variant="paper"):
    return _tiny(
        stereo_config.get_config(variant),
        encoder_features=(4, 4, 4, 4, 4),
        decoder_features=(4, 4),
        head_features=4,
    )


def test_variants_parse_and_unknown_variant_fails():
    for module in (highway_config, stereo_config):
        assert module.get_config().model.dynamic_filter is True
        assert module.get_config("baseline").model.dynamic_filter is False
        assert module.get_config().batch_size == 16 and module.get_config().learning_rate == 1e-3
        with pytest.raises(ValueError, match="Unknown .* variant"):
            module.get_config("nonsense")


@pytest.mark.parametrize(
    "make_config,figures",
    [
        (tiny_highway_config, {"prediction_0.png", "flow.png", "loss_curves.png"}),
        (tiny_stereo_config, {"stereo.png", "loss_curves.png"}),
    ],
)
def test_end_to_end_on_the_standin(tmp_path, caplog, make_config, figures):
    caplog.set_level(logging.INFO)
    results = main.train_and_evaluate(make_config(), str(tmp_path))
    assert "using the procedural stand-in" in caplog.text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["steps"] == 2 and saved["data_source"] == "procedural stand-in"
    assert saved["num_params"] == results["num_params"] > 0
    for name in ("mse", "mse_per_pixel", "mae", "ssim", "psnr"):
        assert np.isfinite(saved["test"][name]), name
    if "stereo.png" in figures:
        assert np.isfinite(saved["test"]["disparity_mae_px"])
    else:
        assert len(saved["test"]["mse_per_horizon"]) == 3
    found = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert figures <= found
    for name in found:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_experiments_read_files(tmp_path):
    video = _video(40, SIZE)
    with h5py.File(tmp_path / "drive.h5", "w") as f:
        f["highway_L"] = video
        f["highway_R"] = np.roll(video, 1, axis=2)
    config = tiny_highway_config()
    config.data.path = str(tmp_path / "drive.h5")
    config.data.test_fraction = 0.5  # 20 test frames: 3 windows of 6.
    experiment = main.make_experiment(config)
    batch = experiment.train_batch(0)
    assert batch.shape == (2, 6, SIZE, SIZE, 1)
    assert np.all(np.isin(batch[:, 0, 0, 0, 0], video[:20, 0, 0] / np.float32(255.0)))
    assert [b.shape for b in experiment.eval_batches()] == [(2, 6, SIZE, SIZE, 1)]
    facts = experiment.describe()
    assert facts["data_source"] == str(tmp_path / "drive.h5") and facts["num_test_frames"] == 20

    config = tiny_stereo_config()
    config.data.path = str(tmp_path / "drive.h5")
    experiment = main.make_experiment(config)
    batch = experiment.train_batch(0)
    assert batch["left"].shape == batch["right"].shape == (2, SIZE, SIZE, 1)
    assert [b["left"].shape for b in experiment.eval_batches()] == [(2, SIZE, SIZE, 1)]

    config.data.path = str(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="does not exist"):
        main.train_and_evaluate(config, str(tmp_path / "run"))
    small = tiny_highway_config()
    with h5py.File(tmp_path / "small.h5", "w") as f:
        f["highway_L"] = _video(40, 16)
    small.data.path = str(tmp_path / "small.h5")
    with pytest.raises(ValueError, match="16x16 frames but the model expects 32x32"):
        main.make_experiment(small).train_batch(0)
