"""Tests for ``dfn_jax.data.episodes``: N-way K-shot episodes on synthetic labelled images whose
pixels say which image (and which rotation) they are, and once on real Omniglot alphabets."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from dfn_jax.data import episodes

NUM_CLASSES, PER_CLASS = 30, 20
GROUPS = np.repeat([0, 1, 2, 3], [12, 8, 6, 4])  # class -> group; groups of 12, 8, 6, 4 classes


def _data(per_class=PER_CLASS, num_classes=NUM_CLASSES, seed=0):
    """Images ``float32 [M, 5, 5]`` (image i holds ``100 i + 0..24``, so any rotation shows) and
    labels, shuffled so that a class's images are not contiguous."""
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))
    images = 100 * np.arange(len(labels), dtype=np.float32)[:, None, None]
    return images + np.arange(25, dtype=np.float32).reshape(5, 5), labels


def _sampler(**kwargs):
    images, labels = _data()
    options = dict(num_ways=5, num_shots=2, num_queries=3, class_groups=GROUPS, seed=7)
    return episodes.EpisodeSampler(images, labels, **(options | kwargs)), images, labels


def test_layout_labels_and_images():
    sampler, images, labels = _sampler()
    batch = sampler.sample(4, 6)
    assert batch.support.shape == (6, 10, 5, 5) and batch.query.shape == (6, 15, 5, 5)
    assert batch.support.dtype == np.float32
    for name in ("support_labels", "query_labels", "classes", "rotations", "support_indices"):
        assert getattr(batch, name).dtype == np.int32, name
    np.testing.assert_array_equal(batch.support_labels, np.tile(np.repeat(np.arange(5), 2), (6, 1)))
    np.testing.assert_array_equal(batch.query_labels, np.tile(np.repeat(np.arange(5), 3), (6, 1)))
    np.testing.assert_array_equal(batch.support, images[batch.support_indices])
    np.testing.assert_array_equal(batch.query, images[batch.query_indices])
    # Each image shows the class its label stands for.
    np.testing.assert_array_equal(
        labels[batch.support_indices], np.take_along_axis(batch.classes, batch.support_labels, 1)
    )
    np.testing.assert_array_equal(
        labels[batch.query_indices], np.take_along_axis(batch.classes, batch.query_labels, 1)
    )
    np.testing.assert_array_equal(batch.rotations, 0)


def test_no_repeats_and_queries_disjoint_from_support():
    for rotations in (False, True):
        sampler, _, _ = _sampler(num_ways=8, num_shots=5, num_queries=15, rotations=rotations)
        batch = sampler.sample(0, 64)
        for e in range(64):
            virtual = list(zip(batch.classes[e], batch.rotations[e], strict=True))
            assert len(set(virtual)) == 8  # no class (and rotation) twice in an episode
            for n in range(8):
                shots = batch.support_indices[e, n * 5 : (n + 1) * 5]
                queries = batch.query_indices[e, n * 15 : (n + 1) * 15]
                assert len(set(shots) | set(queries)) == 20  # all 20 drawings, none twice


def test_within_group_stays_in_one_group_and_skips_small_groups():
    sampler, _, _ = _sampler(num_ways=7, within_group=True)
    assert sampler.num_groups == 2  # the groups of 12 and 8 classes; 6 and 4 are too small
    batch = sampler.sample(3, 200)
    groups = GROUPS[batch.classes]
    assert (groups == groups[:, :1]).all()
    assert set(groups[:, 0]) == {0, 1}
    # Across groups (the default), episodes mix groups.
    across = _sampler(num_ways=7)[0].sample(3, 200)
    assert np.mean([len(set(GROUPS[c])) > 1 for c in across.classes]) > 0.9


def test_class_frequencies_are_uniform():
    batch = _sampler(num_ways=5)[0].sample(0, 600)
    counts = np.bincount(batch.classes.ravel(), minlength=NUM_CLASSES)
    expected = 600 * 5 / NUM_CLASSES  # 100
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected
    first = np.bincount(batch.classes[:, 0], minlength=NUM_CLASSES)  # label 0 is any class
    assert (first > 0).sum() > 25
    drawings = collections.Counter(batch.support_indices.ravel().tolist())
    assert len(drawings) > 0.95 * NUM_CLASSES * PER_CLASS


def test_deterministic_per_seed_and_step():
    sampler, images, labels = _sampler(rotations=True)
    first, again = sampler.sample(11, 8), sampler.sample(11, 8)
    rebuilt = episodes.EpisodeSampler(
        images, labels, num_ways=5, num_shots=2, num_queries=3, class_groups=GROUPS,
        rotations=True, seed=7,
    ).sample(11, 8)  # fmt: skip
    for a, b, c in zip(first, again, rebuilt, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    # A smaller batch is the first episodes of the bigger one.
    np.testing.assert_array_equal(sampler.sample(11, 3).query, first.query[:3])
    # Other steps and seeds give other episodes, and the episodes of a batch differ.
    assert not np.array_equal(sampler.sample(12, 8).support_indices, first.support_indices)
    other_seed = _sampler(rotations=True, seed=8)[0].sample(11, 8)
    assert not np.array_equal(other_seed.support_indices, first.support_indices)
    assert len({tuple(c) for c in first.classes}) == 8


def test_rotations_turn_every_image_of_a_class():
    sampler, images, _ = _sampler(num_ways=10, rotations=True)
    batch = sampler.sample(5, 40)
    assert set(batch.rotations.ravel()) == {0, 1, 2, 3}
    for e in range(40):
        for j, index in enumerate(batch.support_indices[e]):
            turns = batch.rotations[e, batch.support_labels[e, j]]
            np.testing.assert_array_equal(batch.support[e, j], np.rot90(images[index], turns))
        for j, index in enumerate(batch.query_indices[e]):
            turns = batch.rotations[e, batch.query_labels[e, j]]
            np.testing.assert_array_equal(batch.query[e, j], np.rot90(images[index], turns))
    # Rotations make four times the classes: 31-way needs them, 120-way is then possible.
    with pytest.raises(ValueError, match="`num_ways` \\(31\\) is more than the 30 classes"):
        _sampler(num_ways=31)
    assert _sampler(num_ways=120, rotations=True)[0].sample(0, 1).classes.shape == (1, 120)
    # Within a group, a group's rotated classes count: the group of 4 classes offers 16.
    small = _sampler(num_ways=16, within_group=True, rotations=True)[0]
    assert small.num_groups == 4


def test_channels_last_images():
    images, labels = _data()
    images = np.stack([images, -images], axis=-1)  # [M, 5, 5, 2]
    sampler = episodes.EpisodeSampler(
        images, labels, num_ways=3, num_shots=1, num_queries=1, rotations=True
    )
    batch = sampler.sample(0, 4)
    assert batch.support.shape == (4, 3, 5, 5, 2)
    index, turns = batch.support_indices[0, 0], batch.rotations[0, 0]
    np.testing.assert_array_equal(batch.support[0, 0], np.rot90(images[index], turns))


def test_impossible_requests_are_value_errors():
    images, labels = _data()
    base = dict(num_ways=5, num_shots=1, num_queries=1)
    cases = [
        (dict(num_shots=10, num_queries=11), r"\(10 \+ 11 = 21\) different images .* has 20"),
        (dict(num_ways=31), r"`num_ways` \(31\) is more than the 30 classes"),
        (dict(num_ways=13, class_groups=GROUPS, within_group=True), "the largest has 12"),
        (dict(within_group=True), "`within_group=True` needs `class_groups`"),
        (dict(num_ways=0), "`num_ways` must be an int >= 1"),
        (dict(num_queries=0), "`num_queries` must be an int >= 1"),
        (dict(seed=-1), "`seed` must be an int >= 0"),
        (dict(rotations=1), "`rotations` must be a bool"),
        (dict(class_groups=GROUPS[:10]), "`class_groups` has 10 entries"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            episodes.EpisodeSampler(images, labels, **(base | kwargs))
    with pytest.raises(ValueError, match="`labels` must be integers of shape"):
        episodes.EpisodeSampler(images, labels[:-1], **base)
    with pytest.raises(ValueError, match="`images` must have shape"):
        episodes.EpisodeSampler(images[:, 0], labels, **base)
    with pytest.raises(ValueError, match="`rotations` needs square images"):
        episodes.EpisodeSampler(images[:, :4], labels, rotations=True, **base)
    # A class with fewer images than K + Q (here none: label 30 exists, 29 is skipped).
    with pytest.raises(ValueError, match="class 29 has 0"):
        episodes.EpisodeSampler(images, np.where(labels == 29, 30, labels), **base)
    sampler = episodes.EpisodeSampler(images, labels, **base)
    with pytest.raises(ValueError, match="`step` must be an int >= 0"):
        sampler.sample(-1, 2)
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        sampler.sample(0, 0)


def _drawers(labels):
    """Each image's drawer: class c's images are drawn by drawers 0..19 in image order."""
    drawers = np.zeros_like(labels)
    for c in np.unique(labels):
        drawers[labels == c] = np.arange(np.sum(labels == c))
    return drawers


def test_by_drawer_one_drawer_per_shot_and_query():
    images, labels = _data()
    drawers = _drawers(labels)
    options = dict(num_ways=5, num_shots=2, num_queries=3, class_groups=GROUPS, seed=7)
    sampler = episodes.EpisodeSampler(images, labels, drawers=drawers, by_drawer=True, **options)
    batch = sampler.sample(2, 40)
    support = drawers[batch.support_indices].reshape(40, 5, 2)  # [E, N, K]
    query = drawers[batch.query_indices].reshape(40, 5, 3)
    # Shot k (query q) of every class: one drawer; the K + Q drawers of an episode all differ.
    assert (support == support[:, :1]).all() and (query == query[:, :1]).all()
    hands = np.concatenate([support[:, 0], query[:, 0]], -1)  # [E, K + Q]
    assert all(len(set(row)) == 5 for row in hands.tolist())
    np.testing.assert_array_equal(labels[batch.support_indices].reshape(40, 5, 2)[..., 0],
                                  batch.classes)  # fmt: skip
    # Every drawer serves, roughly uniformly (200 of 40 * 5 hands over 20 drawers: 10 each).
    counts = np.bincount(hands.ravel(), minlength=PER_CLASS)
    assert counts.min() >= 2 and counts.max() <= 22
    # Deterministic per (seed, step, episode), and independent of the batch size.
    again = episodes.EpisodeSampler(images, labels, drawers=drawers, by_drawer=True, **options)
    np.testing.assert_array_equal(again.sample(2, 3).query_indices, batch.query_indices[:3])
    # Without by_drawer the drawers of one shot differ across classes (here: almost surely).
    free = episodes.EpisodeSampler(images, labels, drawers=drawers, **options).sample(2, 40)
    assert not (drawers[free.support_indices] == drawers[free.support_indices][:, :1]).all()


def test_by_drawer_only_common_drawers_and_errors():
    images, labels = _data()
    drawers = _drawers(labels)
    base = dict(num_ways=5, num_shots=1, num_queries=1)
    # Classes 0..4 (one group) are drawn by drawers 15..34, the others by 0..19: episodes of
    # that group may use drawers 20..34, the others never do.
    moved = np.where(labels < 5, np.where(drawers < 15, drawers + 20, drawers), drawers)
    sampler = episodes.EpisodeSampler(
        images, labels, drawers=moved, by_drawer=True, class_groups=np.arange(30) // 5,
        within_group=True, seed=1, **base
    )  # fmt: skip
    batch = sampler.sample(0, 60)
    for e in range(60):
        support, query = moved[batch.support_indices[e]], moved[batch.query_indices[e]]
        if batch.classes[e, 0] < 5:  # the group of classes 0..4: any of 15..34
            assert support[0] != query[0]
        else:
            assert support.max() < 20 and query.max() < 20
    cases = [
        (dict(by_drawer=True), "`by_drawer=True` needs `drawers`"),
        (dict(by_drawer=True, drawers=drawers[:-1]), "`drawers` must be integers of shape"),
        (dict(by_drawer=True, drawers=drawers - 1), "`drawers` must be >= 0 .* TFDS"),
        (dict(by_drawer=True, drawers=drawers // 2), "at most one image per class and drawer"),
        (dict(by_drawer=True, drawers=drawers, num_shots=12, num_queries=9), "images are needed"),
        (dict(by_drawer=1, drawers=drawers), "`by_drawer` must be a bool"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            episodes.EpisodeSampler(images, labels, **(base | kwargs))
    # Classes 0 and 1 drawn by disjoint hands: no drawer drew both, told at sampling time.
    disjoint = np.where(labels == 1, drawers + 20, drawers)
    pair = episodes.EpisodeSampler(
        images[labels < 2], labels[labels < 2], drawers=disjoint[labels < 2], by_drawer=True,
        num_ways=2, num_shots=1, num_queries=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="only 0 drawers drew all of classes"):
        pair.sample(0, 1)


def test_omniglot_episodes_within_an_alphabet(shared_data_dir):
    from dfn_jax.data import omniglot

    path = shared_data_dir / "omniglot"
    if not (path / "images_background.zip").is_file():
        pytest.skip(f"Omniglot zips not found at {path}")
    data = omniglot.load_omniglot(
        "background",
        alphabets=["Alphabet_of_the_Magi", "Greek", "Tagalog"],  # 20, 24 and 17 characters
        omniglot_dir=path,
    )
    sampler = episodes.omniglot_episodes(
        data, num_ways=20, num_shots=1, num_queries=1, within_alphabet=True, seed=1
    )
    assert sampler.num_groups == 2  # Tagalog has too few characters for 20-way
    batch = sampler.sample(0, 16)
    assert batch.support.shape == (16, 20, 28, 28) and batch.query.shape == (16, 20, 28, 28)
    alphabets = data.character_alphabet[batch.classes]
    assert (alphabets == alphabets[:, :1]).all() and set(alphabets[:, 0]) == {0, 1}
    # Query and support: different drawers of the same character.
    np.testing.assert_array_equal(
        data.labels[batch.support_indices], data.labels[batch.query_indices]
    )
    assert (data.drawers[batch.support_indices] != data.drawers[batch.query_indices]).all()
    # As the official runs: every exemplar by one drawer, every query by another.
    runs_like = episodes.omniglot_episodes(
        data, num_ways=20, num_shots=1, num_queries=1, within_alphabet=True, by_drawer=True
    ).sample(0, 8)
    support, query = data.drawers[runs_like.support_indices], data.drawers[runs_like.query_indices]
    assert (support == support[:, :1]).all() and (query == query[:, :1]).all()
    assert (support[:, 0] != query[:, 0]).all()
    across = episodes.omniglot_episodes(
        data, num_ways=30, num_shots=5, num_queries=15, within_alphabet=False, rotations=True
    ).sample(3, 2)
    assert across.support.shape == (2, 150, 28, 28)
