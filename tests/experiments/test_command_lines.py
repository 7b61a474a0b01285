"""The experiments' command lines live side by side: importing every module of the experiments
package into one process (as a test session does) defines no absl flag twice, and the commands
that define their flags only when run still parse them."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import experiments
from tests.helpers import REPO_ROOT


def test_every_experiments_module_imports_into_one_process():
    names = [info.name for info in pkgutil.walk_packages(experiments.__path__, "experiments.")]
    assert "experiments.l2l.paired" in names and "experiments.learnet.evaluate_official" in names
    for name in names:
        importlib.import_module(name)  # a flag defined twice raises DuplicateFlagError


@pytest.mark.parametrize(
    ("module", "flags"),
    [
        ("experiments.l2l.paired", ("--log10_grid", "--figure")),
        ("experiments.learnet.paired", ("--models", "--figure")),
        ("experiments.learnet.evaluate_official", ("--omniglot_dir", "--figure")),
        ("experiments.learnet.runs_like", ("--models", "--num_episodes")),
        ("experiments.hypernet.nz_sweep", ("--z_dims", "--figure")),
        ("experiments.compare", ("--workdirs", "--out")),
        ("experiments.export_pretrained", ("--run", "--directory")),
    ],
)
def test_commands_that_define_their_flags_when_run_list_them(module, flags):
    # absl's --help prints the module's flags, then exits with status 1.
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert all(flag in out.stdout for flag in flags), out.stderr[-2000:]
