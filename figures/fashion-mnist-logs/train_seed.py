"""Train the runs of one seed of a reproduction preset exactly as `landscape reproduce` would (same specs, same
folders, the SWA runs branched off their plain run), so several seeds can train in parallel processes; a later
`landscape reproduce --preset P --seeds N --out OUT` finds them finished and analyses them."""
import sys
from pathlib import Path

import torch

from fedtrain.run import train
from landscape.report.presets import REPRODUCE_PRESETS
from landscape.report.reproduce import _branch_point, _finished, plan_runs

preset, seeds, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
algorithms = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else None
torch.set_num_threads(1)
specs = plan_runs(REPRODUCE_PRESETS[preset], seeds, device="cpu")
first_split = specs[0].split
# the heterogeneous runs and their SWA twins first, the homogeneous ones last
for spec in sorted(specs, key=lambda s: (s.split != first_split, s.swa)):
    if spec.seed != seed or (algorithms and spec.algorithm not in algorithms):
        continue
    folder = spec.folder(out)
    if _finished(folder):
        print("done already", folder, flush=True)
        continue
    resume = (folder / "config.json").is_file()
    branch = None if resume or not spec.swa else _branch_point(spec, specs, out)
    print("train", folder, "resume" if resume else "", "branch" if branch else "", flush=True)
    train(spec.config, folder, resume=resume, init_from=branch, threads=1)
print("finished seed", seed, flush=True)
