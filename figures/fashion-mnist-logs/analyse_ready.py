"""Analyse (Hessian, surface) every finished run of a reproduction folder that lacks its analysis, exactly as
`landscape reproduce` does (its _analyse), looping until all planned runs are analysed; planes and figures are left
to the final `landscape reproduce` call."""
import sys
import time
from pathlib import Path

import torch

from landscape.report.presets import REPRODUCE_PRESETS
from landscape.report.reproduce import _analyse, _finished, plan_runs
from landscape.report.stages import StageRunner

preset, seeds, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
part, parts = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, 1)
torch.set_num_threads(1)
settings = REPRODUCE_PRESETS[preset]
specs = [s for i, s in enumerate(plan_runs(settings, seeds, device="cpu")) if i % parts == part]
done: set[str] = set()
while len(done) < len(specs):
    ready = [s for s in specs if str(s.folder(out)) not in done and _finished(s.folder(out))]
    if not ready:
        time.sleep(30)
        continue
    for spec in ready:
        stage = StageRunner(["hessian", "surface"], [], lambda line: print(line, flush=True))
        _analyse(spec, spec.folder(out), settings, stage, None, "cpu")
        done.add(str(spec.folder(out)))
print("all analysed", flush=True)
