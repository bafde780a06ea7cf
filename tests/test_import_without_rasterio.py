"""Training on JPEGs needs no rasterio (issue 16): a lent GPU machine has torch but no GDAL stack.

``terradiff.train`` and ``terradiff.tasks`` reach the raster modules (:mod:`terradiff.data.raster`,
``.raster_write``, ``.cog``, ``.scene_metadata``, ``.temporal.series``), which import rasterio and
affine only where a GeoTIFF is read or written. A subprocess with both made unimportable
(``sys.modules[name] = None``) imports them, imports ``benchmarks/bench_train_loop.py`` and trains
the tests' tiny UNet for 2 steps on the bundled AID JPEGs (read with PIL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Run in the subprocess: argv[1] is the run folder. Prints one JSON line of what it saw.
SCRIPT = """
import importlib.util, json, sys
for name in ("rasterio", "affine"):
    sys.modules[name] = None  # any import of them raises ImportError
sys.path.insert(0, sys.argv[2])
import torch
torch.set_num_threads(int(sys.argv[3]))
import terradiff.tasks  # noqa: F401
import terradiff.train
from terradiff.config import config_from_dict
from terradiff.tasks.generation import GenerationTask
from tests.helpers import tiny_config
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_train_loop", sys.argv[4])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)  # its imports only; main() is not run

run = Path(sys.argv[1])
config = config_from_dict(tiny_config(run, Path(sys.argv[5]), max_steps=2, save_every=2))
result = terradiff.train.Trainer(GenerationTask(config), run).fit()
print(json.dumps({"step": result.step, "checkpoint": str(result.checkpoint)}))
"""


def test_training_on_jpegs_imports_no_rasterio(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    threads = os.environ.get("TERRADIFF_TEST_THREADS", "2")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path / "run"),
            str(REPO),
            threads,
            str(REPO / "benchmarks" / "bench_train_loop.py"),
            str(REPO / "data" / "samples"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["step"] == 2
    assert Path(seen["checkpoint"]).name == "step_00000002"
    assert Path(seen["checkpoint"]).is_dir()
