"""N-way K-shot episodes for one-shot and few-shot learning, indexed by step.

An episode draws ``N`` (``num_ways``) classes, then ``K + Q`` different images of each class
(``num_shots`` support images and ``num_queries`` queries, never the same image twice in a
class), and relabels the classes 0..N-1 in the order they were drawn (a random order). Layout,
class-major:

* ``support [E, N*K, ...]``: ``support[e, n*K + k]`` is shot ``k`` of class ``n``, so
  ``support_labels[e] = [0]*K + [1]*K + ... + [N-1]*K``;
* ``query [E, N*Q, ...]``: ``query[e, n*Q + q]`` is query ``q`` of class ``n``
  (``query_labels[e] = repeat(arange(N), Q)``).

Classes are drawn either across all classes (Vinyals et al. 2016), or within one group
(``within_group=True`` with ``class_groups``, e.g. Omniglot characters within one alphabet, the
protocol of Lake et al. 2015): a group with at least ``N`` classes is chosen uniformly, then ``N``
of its classes. With ``rotations=True`` every class also appears rotated by 90, 180 and 270
degrees as three further classes (of the same group), the rotation applied to all of its images
(``np.rot90`` over the two image axes, counterclockwise); two rotations of one class may meet in
an episode as different classes.

With ``by_drawer=True`` (and each image's ``drawers``) an episode also draws ``K + Q`` different
drawers among those who drew all of its classes: shot ``k`` of every class is drawer ``k``'s
image and query ``q`` of every class drawer ``K + q``'s, so the support images share one hand
per shot and the queries another. Lake et al.'s 20 official Omniglot runs are built this way
(all 20 training images of a run by one drawer, all 20 test images by another), while the
default draws each image's drawer independently.

Sampling is a pure function of ``(seed, step, e)``: episode ``e`` of step ``step`` uses
``numpy.random.default_rng([seed, step, e])``, so a resumed run sees the same episodes and a
batch's first episodes do not depend on its size. Nothing here is specific to Omniglot;
:func:`omniglot_episodes` wires an ``OmniglotSplit`` in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dfn_jax._src.checks import is_int, positive_int

if TYPE_CHECKING:
    from dfn_jax.data.omniglot import OmniglotSplit

__all__ = ["EpisodeBatch", "EpisodeSampler", "images_by_drawer", "omniglot_episodes"]

NUM_ROTATIONS = 4


class EpisodeBatch(NamedTuple):
    """A batch of ``E`` episodes (NumPy arrays; ``...`` is the image shape).

    Attributes:
      support: ``[E, N*K, ...]``, the images' dtype, class-major (module docstring).
      support_labels: ``int32 [E, N*K]`` in 0..N-1.
      query: ``[E, N*Q, ...]``, class-major.
      query_labels: ``int32 [E, N*Q]`` in 0..N-1.
      classes: ``int32 [E, N]``, the original class of each episode label.
      rotations: ``int32 [E, N]``, quarter turns applied to each class (0 without rotations).
      support_indices: ``int32 [E, N*K]``, rows of ``images`` shown in ``support``.
      query_indices: ``int32 [E, N*Q]``, rows of ``images`` shown in ``query``.
    """

    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray
    classes: np.ndarray
    rotations: np.ndarray
    support_indices: np.ndarray
    query_indices: np.ndarray


class EpisodeSampler:
    """Draws batches of N-way K-shot episodes from labelled images (module docstring).

    Args:
      images: ``[M, H, W]`` or ``[M, H, W, C]``, any dtype.
      labels: ``int [M]``, each image's class in 0..num_classes-1.
      num_ways: N, the classes of an episode.
      num_shots: K, support images per class.
      num_queries: Q, query images per class.
      class_groups: ``int [num_classes]``, each class's group (e.g. its alphabet), or None.
      within_group: draw the classes of an episode from one group (needs ``class_groups``).
      rotations: add each class rotated by 90, 180 and 270 degrees as new classes.
      seed: a non-negative int.
      drawers: ``int [M]``, who drew each image (>= 0), or None; needed by ``by_drawer``.
      by_drawer: one drawer per shot and per query across the episode's classes (module
        docstring); each class may have at most one image per drawer.

    Raises:
      ValueError: shapes that disagree, or an impossible request: ``K + Q`` larger than the
        images of a class, ``N`` larger than the classes available (in a group, when
        ``within_group``), or ``by_drawer`` without ``drawers``, with a class drawn twice by
        one drawer or by fewer than ``K + Q`` drawers.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        num_ways: int,
        num_shots: int,
        num_queries: int,
        class_groups: np.ndarray | None = None,
        within_group: bool = False,
        rotations: bool = False,
        seed: int = 0,
        drawers: np.ndarray | None = None,
        by_drawer: bool = False,
    ):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim not in (3, 4):
            raise ValueError(
                f"`images` must have shape [M, H, W] or [M, H, W, C], got shape {images.shape}."
            )
        if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"`labels` must be integers of shape [M] = [{len(images)}] (one per image), got "
                f"shape {labels.shape} and dtype {labels.dtype}."
            )
        if labels.size and labels.min() < 0:
            raise ValueError(f"`labels` must be >= 0, got {labels.min()}.")
        self.num_ways = positive_int(num_ways, name="num_ways")
        self.num_shots = positive_int(num_shots, name="num_shots")
        self.num_queries = positive_int(num_queries, name="num_queries")
        self.seed = positive_int(seed, name="seed", minimum=0)
        flags = ((within_group, "within_group"), (rotations, "rotations"), (by_drawer, "by_drawer"))
        for value, name in flags:
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}.")
        if rotations and images.shape[1] != images.shape[2]:
            raise ValueError(
                f"`rotations` needs square images, got {images.shape[1]}x{images.shape[2]}."
            )
        num_classes = int(labels.max()) + 1 if labels.size else 0
        if class_groups is not None:
            class_groups = np.asarray(class_groups)
            if class_groups.ndim != 1 or not np.issubdtype(class_groups.dtype, np.integer):
                raise ValueError(
                    "`class_groups` must be integers of shape [num_classes], got shape "
                    f"{class_groups.shape} and dtype {class_groups.dtype}."
                )
            if len(class_groups) < num_classes:
                raise ValueError(
                    f"`class_groups` has {len(class_groups)} entries but `labels` go up to "
                    f"{num_classes - 1}; give one group per class."
                )
            num_classes = len(class_groups)
        elif within_group:
            raise ValueError("`within_group=True` needs `class_groups` (one group per class).")
        self.images, self.labels, self.rotations = images, labels, rotations
        self.within_group = within_group
        self._check_class_sizes(num_classes)
        self.num_classes = num_classes
        # members[c, :counts[c]]: the images of class c, in index order.
        counts = np.bincount(labels, minlength=num_classes)
        order = np.argsort(labels, kind="stable")
        self._members = np.zeros((num_classes, counts.max()), np.int64)
        self._valid = np.arange(counts.max()) < counts[:, None]
        self._members[self._valid] = order
        self.by_drawer = by_drawer
        if by_drawer:
            self._drawn = self._drawer_table(drawers, num_classes)
        # Virtual class v: class v // R rotated by v % R quarter turns.
        self._turns = NUM_ROTATIONS if rotations else 1
        virtual = np.arange(num_classes * self._turns)
        if within_group:
            groups = np.repeat(class_groups, self._turns)
            pools = [virtual[groups == g] for g in np.unique(class_groups)]
            self._pools = [pool for pool in pools if len(pool) >= self.num_ways]
            if not self._pools:
                largest = max(len(pool) for pool in pools)
                raise ValueError(
                    f"`num_ways` ({self.num_ways}) is more than the classes of any group (the "
                    f"largest has {largest}{', rotations included' if rotations else ''}); "
                    "lower it or draw across groups (`within_group=False`)."
                )
        else:
            if self.num_ways > len(virtual):
                raise ValueError(
                    f"`num_ways` ({self.num_ways}) is more than the {len(virtual)} classes "
                    f"available{' (rotations included)' if rotations else ''}."
                )
            self._pools = [virtual]

    def _check_class_sizes(self, num_classes: int) -> None:
        per_class = self.num_shots + self.num_queries
        counts = np.bincount(self.labels, minlength=num_classes)
        if num_classes == 0 or counts.min() < per_class:
            smallest = int(np.argmin(counts)) if num_classes else None
            raise ValueError(
                f"`num_shots` + `num_queries` ({self.num_shots} + {self.num_queries} = "
                f"{per_class}) different images are needed of every class, but class "
                f"{smallest} has {counts.min() if num_classes else 0}."
            )

    def _drawer_table(self, drawers, num_classes: int) -> np.ndarray:
        """:func:`images_by_drawer`, with every class drawn by at least ``K + Q`` drawers."""
        if drawers is None:
            raise ValueError("`by_drawer=True` needs `drawers` (who drew each image).")
        table = images_by_drawer(self.labels, drawers, num_classes=num_classes)
        need = self.num_shots + self.num_queries
        counts = np.sum(table >= 0, axis=1)
        if counts.min(initial=need) < need:
            cls = int(np.argmin(counts))
            raise ValueError(
                f"`by_drawer=True` needs `num_shots` + `num_queries` ({need}) drawers of every "
                f"class, but class {cls} has {counts[cls]}."
            )
        return table

    @property
    def num_groups(self) -> int:
        """The groups an episode can be drawn from (1 when drawing across groups)."""
        return len(self._pools)

    def _episode(self, step: int, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``classes [N]``, ``turns [N]`` and image indices ``[N, K + Q]`` of one episode."""
        rng = np.random.default_rng([self.seed, step, index])
        pool = self._pools[int(rng.integers(len(self._pools)))]  # one pool across groups
        virtual = pool[rng.choice(len(pool), self.num_ways, replace=False)]
        classes, turns = virtual // self._turns, virtual % self._turns
        if self.by_drawer:
            table = self._drawn[classes]  # [N, drawers]
            common = np.flatnonzero(np.all(table >= 0, axis=0))
            need = self.num_shots + self.num_queries
            if len(common) < need:
                raise ValueError(
                    f"`by_drawer=True`: only {len(common)} drawers drew all of classes "
                    f"{classes.tolist()}, and an episode needs {need} (`num_shots` + "
                    "`num_queries`)."
                )
            return classes, turns, table[:, rng.choice(common, need, replace=False)]
        keys = rng.random((self.num_ways, self._members.shape[1]))
        keys[~self._valid[classes]] = np.inf
        draws = np.argsort(keys, axis=1)[:, : self.num_shots + self.num_queries]
        return classes, turns, self._members[classes[:, None], draws]

    def sample(self, step: int, batch_size: int) -> EpisodeBatch:
        """The ``batch_size`` episodes of ``step`` (a non-negative int); see :class:`EpisodeBatch`.

        Episode ``e`` depends only on ``(seed, step, e)``."""
        if not is_int(step) or step < 0:
            raise ValueError(f"`step` must be an int >= 0, got {step!r}.")
        batch_size = positive_int(batch_size, name="batch_size")
        episodes = [self._episode(int(step), e) for e in range(batch_size)]
        classes = np.stack([c for c, _, _ in episodes]).astype(np.int32)
        turns = np.stack([t for _, t, _ in episodes]).astype(np.int32)
        indices = np.stack([i for _, _, i in episodes])  # [E, N, K + Q]
        images = self.images[indices]  # [E, N, K + Q, H, W, ...]
        for quarter in range(1, self._turns):
            chosen = turns == quarter
            if chosen.any():
                images[chosen] = np.rot90(images[chosen], quarter, axes=(2, 3))
        n, k, q = self.num_ways, self.num_shots, self.num_queries
        image_shape = self.images.shape[1:]
        return EpisodeBatch(
            support=images[:, :, :k].reshape(batch_size, n * k, *image_shape),
            support_labels=np.tile(np.repeat(np.arange(n, dtype=np.int32), k), (batch_size, 1)),
            query=images[:, :, k:].reshape(batch_size, n * q, *image_shape),
            query_labels=np.tile(np.repeat(np.arange(n, dtype=np.int32), q), (batch_size, 1)),
            classes=classes,
            rotations=turns,
            support_indices=indices[:, :, :k].reshape(batch_size, n * k).astype(np.int32),
            query_indices=indices[:, :, k:].reshape(batch_size, n * q).astype(np.int32),
        )


def images_by_drawer(labels, drawers, *, num_classes: int | None = None) -> np.ndarray:
    """``int64 [num_classes, num_drawers]``: the image (row of ``labels``) of each class by each
    drawer, -1 where that drawer did not draw the class; ``labels`` and ``drawers`` are ``int
    [M]`` (drawers >= 0) and ``num_classes`` defaults to ``max(labels) + 1``.

    Raises:
      ValueError: shapes or dtypes that disagree, a negative drawer (unknown, e.g. Omniglot read
        through TFDS), or a class drawn twice by one drawer.
    """
    labels, drawers = np.asarray(labels), np.asarray(drawers)
    if drawers.shape != labels.shape or not np.issubdtype(drawers.dtype, np.integer):
        raise ValueError(
            f"`drawers` must be integers of shape [M] = [{len(labels)}] (one per image), "
            f"got shape {drawers.shape} and dtype {drawers.dtype}."
        )
    if drawers.size and drawers.min() < 0:
        raise ValueError(
            f"`drawers` must be >= 0 for `by_drawer=True`, got {drawers.min()} (unknown "
            "drawers, e.g. Omniglot read through TFDS, cannot be matched)."
        )
    if num_classes is None:
        num_classes = int(labels.max(initial=-1)) + 1
    table = np.full((num_classes, int(drawers.max(initial=-1)) + 1), -1, np.int64)
    table[labels, drawers] = np.arange(len(drawers))
    per_class = np.bincount(labels * table.shape[1] + drawers, minlength=table.size)
    if per_class.max(initial=0) > 1:
        cls, drawer = divmod(int(np.argmax(per_class)), table.shape[1])
        raise ValueError(
            f"`by_drawer=True` needs at most one image per class and drawer; drawer {drawer} "
            f"drew class {cls} {per_class.max()} times."
        )
    return table


def omniglot_episodes(
    data: OmniglotSplit,
    *,
    num_ways: int,
    num_shots: int,
    num_queries: int,
    within_alphabet: bool,
    rotations: bool = False,
    seed: int = 0,
    by_drawer: bool = False,
) -> EpisodeSampler:
    """An :class:`EpisodeSampler` over an ``OmniglotSplit``'s characters, their alphabets as
    groups: ``within_alphabet=True`` draws each episode's characters from one alphabet (Lake et
    al. 2015's protocol; alphabets with fewer than ``num_ways`` characters are skipped),
    ``False`` across alphabets (Vinyals et al. 2016); ``by_drawer=True`` builds episodes as the
    official runs are (one drawer per shot and per query, :class:`EpisodeSampler`)."""
    return EpisodeSampler(
        data.images,
        data.labels,
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=num_queries,
        class_groups=data.character_alphabet,
        within_group=within_alphabet,
        rotations=rotations,
        seed=seed,
        drawers=data.drawers,
        by_drawer=by_drawer,
    )
