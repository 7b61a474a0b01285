"""Figures as PNG files: frame strips, flow fields, loss curves.

Drawn on ``matplotlib.figure.Figure`` objects directly (no pyplot), so importing this module
never changes the backend of a notebook. Arrays are channels-last; grey frames ``[T, H, W, 1]``
in ``[0, 1]``.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def _subplots(nrows, ncols, figsize):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _show(ax, image, title=None):
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    ax.imshow(np.clip(image, 0, 1), cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def plot_sequence_rows(
    rows: Sequence[np.ndarray], row_labels: Sequence[str], path: pathlib.Path, *, title: str = ""
) -> pathlib.Path:
    """One row of frames per array ``[T, H, W, C]`` (rows may differ in length), saved to path."""
    cols = max(len(r) for r in rows)
    fig, axes = _subplots(len(rows), cols, (cols * 0.9, len(rows) * 1.0))
    for r, (frames, label) in enumerate(zip(rows, row_labels, strict=True)):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(frames):
                _show(ax, frames[c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_images(
    images: Sequence[np.ndarray], titles: Sequence[str], path: pathlib.Path, *, ncols: int = 4
) -> pathlib.Path:
    """A grid of images (grey ``[H, W(, 1)]`` or RGB ``[H, W, 3]``) with titles."""
    nrows = -(-len(images) // ncols)
    fig, axes = _subplots(nrows, ncols, (ncols * 2.0, nrows * 2.1))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.axis("on")
        _show(ax, image, title)
    return _save(fig, path)


def flow_legend(size: int = 64) -> np.ndarray:
    """The colour wheel that :func:`dfn_jax.ops.flow_to_rgb` draws: offset (dx, dy) at each pixel
    of a ``size x size`` square, magnitude 1 at the edge. Image rows grow downwards (+dy)."""
    from dfn_jax import ops

    r = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    dx, dy = np.meshgrid(r, r)
    rgb = np.array(ops.flow_to_rgb(np.stack([dx, dy], -1), max_magnitude=1.0))
    rgb[np.hypot(dx, dy) > 1.0] = 1.0
    return rgb


def plot_loss_curves(records: Sequence[dict], path: pathlib.Path) -> pathlib.Path | None:
    """Training loss (and evaluation metrics, when logged) against step, from metric records
    (dicts with ``step``, ``train/loss`` and ``eval/...`` keys: the lines of ``metrics.jsonl``,
    ``dfn_jax.training.read_metrics(workdir)``); ``None`` when there is no training loss."""
    train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    if not train:
        return None
    evals = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("eval/") and isinstance(v, (int, float)):
                evals.setdefault(k, []).append((r["step"], v))
    ncols = 1 + bool(evals)
    fig, axes = _subplots(1, ncols, (4.5 * ncols, 3.2))
    steps, losses = zip(*train, strict=True)
    axes[0, 0].plot(steps, losses, lw=1)
    axes[0, 0].set(xlabel="step", ylabel="training loss", title="training loss")
    if evals:
        ax = axes[0, 1]
        for k, points in sorted(evals.items()):
            s, v = zip(*points, strict=True)
            ax.plot(s, v, marker="o", ms=3, label=k[len("eval/") :])
        ax.set(xlabel="step", title="evaluation", yscale="log")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_kernel_grid(
    kernel: np.ndarray, path: pathlib.Path, *, title: str | None = None
) -> pathlib.Path:
    """A convolution kernel ``[kh, kw, in, out]`` as an ``in x out`` grid of ``kh x kw`` tiles
    (one shared, symmetric colour scale: red positive, blue negative)."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 4:
        raise ValueError(f"`kernel` must have shape [kh, kw, in, out], got {kernel.shape}.")
    kh, kw, n_in, n_out = kernel.shape
    # [in*(kh+1), out*(kw+1)] mosaic with one-pixel NaN gutters.
    mosaic = np.full((n_in * (kh + 1) - 1, n_out * (kw + 1) - 1), np.nan, np.float32)
    for i in range(n_in):
        for o in range(n_out):
            y, x = i * (kh + 1), o * (kw + 1)
            mosaic[y : y + kh, x : x + kw] = kernel[:, :, i, o]
    limit = float(np.nanmax(np.abs(mosaic))) or 1.0
    fig, axes = _subplots(1, 1, (0.35 * n_out + 1.2, 0.35 * n_in + 0.8))
    ax = axes[0, 0]
    image = ax.imshow(mosaic, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set(xlabel="output channel", ylabel="input channel", xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.7)
    return _save(fig, path)


def plot_metric_curves(
    curves: dict[str, Sequence[tuple[float, float]]],
    path: pathlib.Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    point_labels: dict[tuple[float, float], str] | None = None,
) -> pathlib.Path:
    """Several runs' curves in one figure: ``{label: [(x, y), ...]}`` (e.g. validation bits
    per character against training time). ``point_labels`` annotates single points: ``{(x, y):
    text}`` (e.g. each point of a sweep with its setting)."""
    if not curves or not all(curves.values()):
        raise ValueError("`curves` must map each label to a non-empty list of (x, y) points.")
    fig, axes = _subplots(1, 1, (5.0, 3.4))
    ax = axes[0, 0]
    for label, points in curves.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=label)
    for (x, y), text in (point_labels or {}).items():
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_per_step(
    losses: dict[str, np.ndarray], path: pathlib.Path, *, title: str | None = None
) -> pathlib.Path:
    """Optimizers compared on the same problems: ``{label: losses [problems, steps + 1]}``, the
    mean loss per step as a line and the 25-75th percentiles across problems as a band, on a
    log scale (the learning-to-learn paper's figures). Non-finite losses (a diverged run) are
    left out of the statistics."""
    if not losses:
        raise ValueError("`losses` must map at least one label to [problems, steps] arrays.")
    fig, axes = _subplots(1, 1, (5.4, 3.6))
    ax = axes[0, 0]
    for label, values in losses.items():
        values = np.asarray(values, np.float64)
        if values.ndim != 2:
            raise ValueError(f"`losses[{label!r}]` must be [problems, steps], got {values.shape}.")
        steps = np.arange(values.shape[1])
        values = np.where(np.isfinite(values), values, np.nan)  # a diverged run leaves a gap
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps
            mean = np.nanmean(values, 0)
            low, high = np.nanpercentile(values, [25, 75], axis=0)
        (line,) = ax.plot(steps, mean, lw=1.4, label=label)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel="optimization step", ylabel="loss (mean; band: 25-75%)", yscale="log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_one_shot_run(
    exemplars: np.ndarray,
    queries: np.ndarray,
    choices: np.ndarray,
    answers: np.ndarray,
    path: pathlib.Path,
    *,
    title: str = "",
) -> pathlib.Path:
    """An N-way one-shot task and a model's answers: the exemplars ``[N, H, W]`` (one per
    class), the queries ``[Q, H, W]``, and under each query the exemplar it was matched to
    (``choices [Q]``), titled green when it is ``answers [Q]`` and red otherwise."""
    n, q = len(exemplars), len(queries)
    cols = max(n, q)
    fig, axes = _subplots(3, cols, (cols * 0.75, 3 * 0.95))
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        axes[0, i].axis("on")
        _show(axes[0, i], exemplars[i], f"class {i}")
    for j in range(q):
        correct = int(choices[j]) == int(answers[j])
        for row, image in ((1, queries[j]), (2, exemplars[int(choices[j])])):
            axes[row, j].axis("on")
            _show(axes[row, j], image)
        axes[2, j].set_title("right" if correct else f"wrong ({int(answers[j])})", fontsize=6,
                             color="green" if correct else "red")  # fmt: skip
    axes[0, 0].set_ylabel("exemplars", fontsize=7)
    axes[1, 0].set_ylabel("queries", fontsize=7)
    axes[2, 0].set_ylabel("matched to", fontsize=7)
    errors = int(np.sum(np.asarray(choices) != np.asarray(answers)))
    fig.suptitle(f"{title} ({errors}/{q} wrong)" if title else f"{errors}/{q} wrong", fontsize=9)
    return _save(fig, path)


def plot_run_errors(
    errors: Sequence[float] | dict[str, Sequence[float]],
    path: pathlib.Path,
    *,
    reference: dict[str, float] | None = None,
) -> pathlib.Path:
    """Error (percent) per one-shot run as bars, with the mean and optional reference lines
    (``{label: error}``, e.g. a published baseline); ``errors`` as ``{model: errors}`` draws
    the models' bars side by side, each with its mean."""
    models = errors if isinstance(errors, dict) else {"": errors}
    references = reference or {}
    fig, axes = _subplots(1, 1, (6.0, 3.0))
    ax = axes[0, 0]
    width = 0.8 / len(models)
    colors = ("tab:blue", "tab:green", "tab:purple", "tab:brown")
    for index, (name, values) in enumerate(models.items()):
        values = np.asarray(values, np.float64)
        runs = np.arange(1, len(values) + 1)
        color = colors[index % len(colors)] if name else "tab:blue"
        ax.bar(runs + (index - (len(models) - 1) / 2) * width, values, width, color=color,
               label=name or None)  # fmt: skip
        mean_color = color if name else "black"
        label = f"{name} mean {values.mean():.1f}%".strip()
        ax.axhline(values.mean(), color=mean_color, lw=1, label=label)
    for (label, value), color in zip(references.items(), ("tab:red", "tab:orange"), strict=False):
        ax.axhline(value, color=color, lw=1, ls="--", label=f"{label} {value:.1f}%")
    ax.set_xlabel("run")
    ax.set_ylabel("error (%)")
    ax.set_xticks(runs)
    ax.tick_params(labelsize=7)
    # Headroom for the legend, so that it never covers a bar (a hard run can be any run).
    highest = max(1.0, *(float(np.max(v)) for v in models.values()), *references.values())
    ax.set_ylim(0, 1.45 * highest)
    ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False)
    return _save(fig, path)


def plot_set_errors(
    errors: dict[str, Sequence[float]],
    path: pathlib.Path,
    *,
    labels: Sequence[str],
    spans: dict[str, Sequence[Sequence[float]]] | None = None,
) -> pathlib.Path:
    """Several models' errors (percent) on several test sets as grouped horizontal bars:
    ``errors`` is ``{set: [one error per model]}`` (models named by ``labels``), ``spans``
    optionally ``{set: [(low, high) per model]}``, a range drawn as a whisker on each bar (e.g.
    where a smaller test set's error would fall)."""
    names = list(errors)
    fig, axes = _subplots(1, 1, (6.0, 0.3 * len(names) * len(labels) + 0.8))
    ax = axes[0, 0]
    height = 0.8 / len(labels)
    colors = ("tab:blue", "tab:green", "tab:purple", "tab:brown")
    rows = np.arange(len(names))[::-1]
    for index, label in enumerate(labels):
        values = np.asarray([errors[name][index] for name in names], np.float64)
        y = rows + ((len(labels) - 1) / 2 - index) * height
        ax.barh(y, values, height, color=colors[index % len(colors)], label=label)
        for row, name in zip(y, names, strict=True):
            if spans and name in spans:
                low, high = spans[name][index]
                ax.plot([low, high], [row, row], color="black", lw=1)
        for row, value in zip(y, values, strict=True):
            ax.text(value, row, f" {value:.1f}", va="center", fontsize=6)
    ax.set_yticks(rows)
    ax.set_yticklabels([name.replace("_", " ") for name in names], fontsize=7)
    ax.set_xlabel("error (%)")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_paired(
    pairs: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: pathlib.Path,
    *,
    labels: tuple[str, str] = ("A", "B"),
    quantity: str = "final loss",
) -> pathlib.Path:
    """One panel per entry of ``pairs`` (``{title: (a, b)}``, item ``i`` the same in both): each
    item's ``b`` (x) against its ``a`` (y), with the diagonal; points below it are items where
    ``a`` is lower. Each panel's title gives how many items are below the diagonal."""
    fig, axes = _subplots(1, len(pairs), (3.2 * len(pairs), 3.3))
    for ax, (title, (a, b)) in zip(axes[0], pairs.items(), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        low, high = min(a.min(), b.min()), max(a.max(), b.max())
        ax.plot([low, high], [low, high], color="black", lw=1)
        ax.scatter(b, a, s=6, alpha=0.5, color="tab:blue", linewidths=0)
        ax.set_title(f"{title}: {labels[0]} lower on {np.sum(a < b)}/{a.size}", fontsize=8)
        ax.set_xlabel(f"{labels[1]} {quantity}", fontsize=8)
        ax.set_ylabel(f"{labels[0]} {quantity}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal")
    return _save(fig, path)
