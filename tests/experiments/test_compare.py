"""experiments.compare: several runs' evaluation curves in one figure and a JSON summary."""

import json
import subprocess
import sys

from dfn_jax.training import MetricWriter
from tests.helpers import REPO_ROOT


def test_compare_draws_the_curves_and_summarises(tmp_path):
    for name, offset in (("a", 0.0), ("b", 0.5)):
        writer = MetricWriter(tmp_path / name)
        for step in (10, 20, 30):
            writer.write(
                step,
                {"val_bpc": 3.0 - step / 20 + offset, "train_time_s": step * 2.0},
                prefix="eval/",
            )
        writer.close()
    out = tmp_path / "curves.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.compare",
            f"--workdirs={tmp_path / 'a'},{tmp_path / 'b'}",
            "--labels=A,B",
            "--metric=val_bpc",
            "--x=train_time_s",
            f"--out={out}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["A"] == {"last": 1.5, "best": 1.5, "points": 3}
    assert summary["B"]["best"] == 2.0 and out.stat().st_size > 1000
