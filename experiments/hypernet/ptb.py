"""Character-level Penn Treebank with the HyperLSTM and its LSTM baselines (HyperNetworks v4
Sec. 4.4).

Binds :class:`dfn_jax.models.hypernet.CharLM`, the PTB character streams
(:mod:`dfn_jax.data.ptb`) and the mean cross-entropy for the shared trainer, with truncated
backpropagation through time: the training stream is cut into ``batch_size`` contiguous rows and
each step reads the next ``seq_length`` characters of every row, starting from the hidden state
the previous step left (the trainer's carry; reset at each epoch's first segment). Evaluation
runs over the whole validation and test streams (``eval_rows`` contiguous rows each, state
carried through) and reports bits per character: ``val_bpc``, ``test_bpc``.
Configs and commands: ``experiments/configs/hyper_ptb.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from dfn_jax.data import ptb
from dfn_jax.models.hypernet import CharLM, CharLMConfig
from dfn_jax.training import Experiment, dataclass_from_config

LN2 = math.log(2.0)


class CharPTB(Experiment):
    config_keys = frozenset({"seq_length", "eval_rows"})
    data_keys = frozenset({"ptb_dir"})
    carry_spec = P("data")  # one hidden state per row of the batch

    @functools.cached_property
    def model_config(self) -> CharLMConfig:
        return dataclass_from_config(CharLMConfig, self.config.model)

    @property
    def ptb_dir(self) -> str:
        return self.config.data.ptb_dir or os.environ.get("DFN_PTB_DIR", "")

    def config_problems(self) -> list[str]:
        problems = []
        if self.ptb_dir and not pathlib.Path(self.ptb_dir).expanduser().is_dir():
            problems.append(f"`data.ptb_dir` {self.ptb_dir!r} is not a directory.")
        for name in ("seq_length", "eval_rows"):
            value = self.config[name]
            if not isinstance(value, int) or value <= 0:
                problems.append(f"`{name}` must be a positive integer, got {value!r}.")
        if self.config.eval_batch_size != self.config.eval_rows:
            problems.append(
                f"`eval_batch_size` ({self.config.eval_batch_size}) must equal `eval_rows` "
                f"({self.config.eval_rows}): one evaluation batch holds a whole stream."
            )
        return problems + self.model_problems()

    @functools.cached_property
    def _train_rows(self) -> np.ndarray:
        return ptb.batch_streams(ptb.load_ptb_chars(self.ptb_dir, "train"), self.config.batch_size)

    @property
    def segments_per_epoch(self) -> int:
        return (self._train_rows.shape[1] - 1) // self.config.seq_length

    # -- model and data ---------------------------------------------------------------------
    def build_model(self, rngs: nnx.Rngs) -> CharLM:
        return CharLM(self.model_config, rngs=rngs)

    def init_carry(self):
        # An abstract model (nnx.eval_shape: no weights initialised) knows the state's shapes.
        model = nnx.eval_shape(lambda: CharLM(self.model_config, rngs=nnx.Rngs(0)))
        return model.initial_state(self.config.batch_size)

    def train_batch(self, step: int, rows=None) -> dict:
        segment = step % self.segments_per_epoch
        length = self.config.seq_length
        start = segment * length
        data = self._train_rows if rows is None else self._train_rows[rows]
        return {
            "tokens": data[:, start : start + length],
            "targets": data[:, start + 1 : start + length + 1],
            "reset": np.full(len(data), segment == 0),
        }

    def carried_loss(self, model, batch, key, carry):
        def fresh(x):
            return jnp.where(batch["reset"].reshape(-1, *([1] * (x.ndim - 1))), 0.0, x)

        state = jax.tree.map(fresh, carry)
        nll, state = model.nll(batch["tokens"], batch["targets"], state, key=key)
        loss = jnp.mean(nll)
        return loss, {"bpc": loss / LN2}, state

    @functools.cached_property
    def _eval_streams(self) -> dict[str, np.ndarray]:
        """valid and test as ``[eval_rows, L]`` (padded to one length; ``mask`` marks tokens)."""
        rows = self.config.eval_rows
        streams = {
            s: ptb.batch_streams(ptb.load_ptb_chars(self.ptb_dir, s), rows)
            for s in ("valid", "test")
        }
        length = max(x.shape[1] for x in streams.values())
        out = {}
        for split, data in streams.items():
            mask = np.zeros((rows, length - 1), np.float32)
            mask[:, : data.shape[1] - 1] = 1.0
            padded = np.zeros((rows, length), np.int32)
            padded[:, : data.shape[1]] = data
            out[split] = (padded, mask)
        return out

    def eval_batches(self, rows=None):
        for split, flag in (("valid", 1.0), ("test", 0.0)):
            data, mask = self._eval_streams[split]
            if rows is not None:
                data, mask = data[rows], mask[rows]
            yield {
                "tokens": data[:, :-1],
                "targets": data[:, 1:],
                "mask": mask,
                "is_val": np.full(len(data), flag, np.float32),
            }

    def eval_sums(self, model, batch):
        state = model.initial_state(batch["tokens"].shape[0])
        nll, _ = model.nll(batch["tokens"], batch["targets"], state)
        per_row = jnp.sum(nll * batch["mask"], axis=1) / LN2  # bits
        count = jnp.sum(batch["mask"], axis=1)
        is_val = batch["is_val"]
        return {
            "val_bpc": jnp.sum(is_val * per_row),
            "val_count": jnp.sum(is_val * count),
            "test_bpc": jnp.sum((1 - is_val) * per_row),
            "test_count": jnp.sum((1 - is_val) * count),
        }

    def describe(self) -> dict:
        return {
            "model": dataclasses.asdict(self.model_config),
            "segments_per_epoch": self.segments_per_epoch,
            "epochs": self.config.num_train_steps / self.segments_per_epoch,
        }


EXPERIMENT = CharPTB
