"""Which flatness explains accuracy across a set of trained runs: every measure of each final model, its generalisation gap, and the rank correlations.

For each run (a folder with ``checkpoints/final.pt``, e.g. every run of a reproduction) the final model
(SWA when it has one) gets :func:`landscape.hessian.analysis.analyze_checkpoint` with the flatness
measures on the fixed seeded training subset, and its accuracy on a seeded training subset
(``train_examples``) and on the run's own test subset (``eval_examples`` of its config, its seed): the
gap is train minus test accuracy, both computed here by the same evaluation. Then
:func:`landscape.report.claims.measure_correlations` ranks the models by each measure against test
accuracy and against the gap (Kendall's tau, exact or permutation p-values), and
:func:`landscape.report.claims.write_measure_table` states which measure, if any, explains accuracy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedtrain.checkpoint import file_sha256, load_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.data import evaluation_tensors, load_dataset
from fedtrain.errors import ConfigError
from fedtrain.evaluate import evaluate_state
from fedtrain.io import atomic_write_text, json_roundtrip, read_json, write_json
from fedtrain.lock import holds_lock
from fedtrain.progress import Progress, ProgressCallback, report
from landscape.hessian.analysis import analyze_checkpoint
from landscape.hessian.measures import SCALE_INVARIANT
from landscape.report.claims import measure_correlations, write_measure_table
from landscape.settings import HessianSettings, MeasureSettings

__all__ = ["find_runs", "model_row", "flatness_report"]

# The Hessian part of the analysis is the measures' own (lambda-max, trace): the report's top-k, trace and density are off.
_HESSIAN_ONLY_FOR_MEASURES = dict(top_k=1, trace=False, density=False)


def find_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Run folders: each path that holds ``checkpoints/final.pt``, else every such folder below it (sorted).

    Raises:
        ConfigError: a path with no finished run in or below it.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        found = [path] if (path / "checkpoints" / "final.pt").is_file() else sorted(
            p.parent.parent for p in path.glob("**/checkpoints/final.pt"))
        if not found:
            raise ConfigError(f"{path} holds no finished run (no checkpoints/final.pt in or below it). Train it first, "
                              "or pass the run folders of a reproduction (OUT/runs).")
        runs += found
    return runs


def _label(config: TrainConfig) -> str:
    return f"{config.algorithm}{'+swa' if config.swa else ''} alpha={config.alpha:g} seed={config.seed}"


def model_row(run: Path, hessian: HessianSettings, measures: MeasureSettings, *, train_examples: int = 2048,
              data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """One model's measures, train and test accuracy and gap (a flat dict; ``costs`` holds the measures' costs).

    Raises:
        CheckpointError, DataNotFoundError, ConfigError: an unusable run.
    """
    start = time.perf_counter()
    checkpoint = load_checkpoint(run / "checkpoints" / "final.pt")
    config = TrainConfig.from_dict(checkpoint.config)
    report = analyze_checkpoint(run / "checkpoints" / "final.pt", hessian, measures=measures, data_dir=data_dir)
    model = checkpoint.build_model(hessian.weights)
    dataset = load_dataset(checkpoint.dataset, data_dir if data_dir is not None else checkpoint.data_dir)
    train_x, train_y = evaluation_tensors(dataset, "train", train_examples, hessian.seed)
    test_x, test_y = evaluation_tensors(dataset, "test", config.eval_examples, config.seed)
    bn = [train_x[i : i + 256] for i in range(0, min(2048, len(train_y)), 256)]  # BatchNorm models: as the run evaluates
    train = evaluate_state(model, model.state_dict(), train_x, train_y, batchnorm_batches=bn)
    test = evaluate_state(model, model.state_dict(), test_x, test_y, batchnorm_batches=bn)
    values = report.measures["values"]
    return {
        "run": str(run), "label": _label(config), "algorithm": config.algorithm, "swa": config.swa, "alpha": config.alpha,
        "seed": config.seed, "weights": report.config["weights"], "accuracy": test["accuracy"],
        "train_accuracy": train["accuracy"], "gap": train["accuracy"] - test["accuracy"], "test_loss": test["loss"],
        "train_loss": train["loss"], **values, "stderr": report.measures["stderr"],
        "costs": {key: report.measures[key] for key in ("products", "losses", "gradients", "seconds")},
        "seconds": time.perf_counter() - start,
    }


@holds_lock("out")  # one writer of the folder, like every command that writes one
def flatness_report(runs: Sequence[Path], out: str | os.PathLike[str], *, hessian: HessianSettings = HessianSettings(),
                    measures: MeasureSettings = MeasureSettings(), train_examples: int = 2048,
                    data_dir: str | os.PathLike[str] | None = None, permutations: int = 20000,
                    on_model: Callable[[dict[str, Any]], None] | None = None,
                    progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Every measure of every run's final model and its rank correlations; writes ``flatness.json`` and ``table.md`` in ``out``.

    Args:
        runs: run folders (:func:`find_runs`).
        out: output folder.
        hessian: the data subset, batch size, tolerance, seed, weights and device of the analyses (its
            top-k, trace and density are not computed: the measures hold lambda_max and the trace).
        measures: the measures and their settings.
        train_examples: size of the seeded training subset the train accuracy is taken on.
        data_dir: where the dataset is looked for first.
        permutations: permutations of the p-value when values tie (seed ``hessian.seed``).
        on_model: called with each model's row as soon as it is measured.
        progress: the ``"flatness"`` stage in models: ``done`` of ``len(runs)`` after each model (cached rows count).

    Returns:
        ``{"models": rows, "correlations": [...], "settings": ..., "explains_accuracy": [measure keys]}``.
    """
    import dataclasses

    hessian = dataclasses.replace(hessian, **_HESSIAN_ONLY_FOR_MEASURES)
    folder = Path(out)
    settings = {"hessian": hessian.to_dict(), "measures": measures.to_dict(), "train_examples": train_examples}
    rows = []
    report(progress, Progress("flatness", 0, len(runs), "models", detail=str(runs[0]) if runs else "",
                              hint="fewer --measures, fewer --samples, a smaller --trace-matvecs"))
    for run in runs:
        rows.append(_cached_row(folder / "models", run, settings) or
                    _save_row(folder / "models", run, settings,
                              model_row(run, hessian, measures, train_examples=train_examples, data_dir=data_dir)))
        if on_model is not None:
            on_model(rows[-1])
        report(progress, Progress("flatness", len(rows), len(runs), "models", detail=rows[-1].get("label", str(run))))
    keys = [k for k in SCALE_INVARIANT if any(k in r for r in rows)]
    correlations = measure_correlations(rows, keys, permutations=permutations, seed=hessian.seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_measure_table(correlations, folder / "correlations.md", invariant=SCALE_INVARIANT)
    result = {
        "models": rows,
        "correlations": [dataclasses.asdict(c) | {"explains": c.explains} for c in correlations],
        "explains_accuracy": sorted({c.measure for c in correlations if c.explains and c.target == "accuracy"}),
        "settings": {"hessian": hessian.to_dict(), "measures": measures.to_dict(), "train_examples": train_examples,
                     "permutations": permutations},
    }
    write_json(folder / "flatness.json", result)
    atomic_write_text(folder / "table.md", _model_table(rows, keys) + "\n" + (folder / "correlations.md").read_text())
    return result


def _row_file(folder: Path, run: Path) -> Path:
    return folder / (str(run.resolve()).strip("/").replace("/", "__") + ".json")


def _cached_row(folder: Path, run: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The row an earlier report computed for ``run`` with the same settings and the same final checkpoint, if any."""
    path = _row_file(folder, run)
    if not path.is_file():
        return None
    saved = read_json(path)
    same = saved.get("settings") == json_roundtrip(settings) and saved.get("checkpoint_sha256") == file_sha256(run / "checkpoints" / "final.pt")
    return saved["row"] if same else None


def _save_row(folder: Path, run: Path, settings: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Keep ``row`` so that a report over more runs later does not measure this model again."""
    write_json(_row_file(folder, run), {"settings": settings, "checkpoint_sha256": file_sha256(run / "checkpoints" / "final.pt"),
                                        "row": row})
    return row


def _model_table(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    head = ["model", "test acc", "train acc", "gap", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], f"{100 * r['accuracy']:.2f}", f"{100 * r['train_accuracy']:.2f}", f"{100 * r['gap']:+.2f}"]
        cells += [f"{r[k]:.4g}" if r.get(k) is not None else "n/a" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
