"""The one place that talks to Orbax: save and restore the train state pytree.

Kept small on purpose so that a move to Orbax's v1 API touches this file only. The train state is
a plain pytree (a dict of arrays: ``step``, ``params``, ``model_state``, ``opt_state``, ``carry``,
``key``, ``train_time_s``), saved with ``StandardSave``. Checkpoints written before a top-level
entry existed (those of dfn_jax before ``model_state``, ``carry`` and ``key`` were added) restore
what they hold; the missing entries keep the template's (initial) values, and a log line says so.
"""

from __future__ import annotations

import logging
import pathlib
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the last ``max_to_keep`` checkpoints of a run under ``<workdir>/checkpoints``."""

    def __init__(
        self, workdir: str | pathlib.Path, *, max_to_keep: int = 3, async_save: bool = True
    ):
        self.directory = pathlib.Path(workdir).resolve() / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Starts saving ``state`` at ``step`` (asynchronously); returns whether a save began."""
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def restore(self, step: int, template: Any) -> Any:
        """Restores the checkpoint at ``step`` into the structure, dtypes and shardings of
        ``template`` (a pytree of arrays or ``jax.ShapeDtypeStruct``)."""
        missing = self._missing_entries(step, template)
        held = {k: v for k, v in template.items() if k not in missing} if missing else template
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, held)
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        if missing:
            log.info(
                "Checkpoint %s predates the state entries %s; they start from their initial "
                "values.",
                self.directory / str(step),
                missing,
            )
            restored = {**template, **restored}
        return restored

    def _missing_entries(self, step: int, template: Any) -> list[str]:
        """Top-level entries of a dict ``template`` that the checkpoint at ``step`` lacks."""
        if not isinstance(template, dict):
            return []
        metadata = self._manager.item_metadata(step)
        tree = getattr(metadata, "tree", metadata)
        if not isinstance(tree, dict):
            return []
        return sorted(set(template) - set(tree))

    def restore_latest(self, template: Any) -> tuple[int | None, Any]:
        """Restores the newest checkpoint that loads; returns ``(step, state)``, or
        ``(None, template)`` when there is none.

        A checkpoint that fails to load (truncated file, missing metadata) is reported with a
        warning naming it, moved aside to ``<step>.corrupt`` (kept for inspection, never
        deleted) and the previous one is tried.
        """
        for step in reversed(self.all_steps()):
            try:
                return step, self.restore(step, template)
            except Exception as e:  # noqa: BLE001 (any failure to read means "not usable")
                path = self.directory / str(step)
                message = (
                    f"Checkpoint {path} could not be restored ({type(e).__name__}: {e}); "
                    f"moving it to {path}.corrupt and trying the previous one."
                )
                log.warning(message)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                if path.exists():
                    path.rename(path.with_name(f"{step}.corrupt"))
                self._manager.reload()
        return None, template

    def wait(self) -> None:
        """Blocks until asynchronous saves have been committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
