"""Damaged, hostile and inconsistent files, through every command that reads them: refused cleanly, nothing written, no code run.

For each kind of file the toolkit reads, a table of damages (truncated, empty, binary, of another shape,
missing or wrongly typed entries, inconsistent with the model or run, oversized declarations, malicious
pickles and YAML tags) is applied to a valid file of a tiny run, and every command that reads that kind
is invoked through the real CLI. Each must: exit non-zero through click (no other exception), print one
paragraph ``Error: ...`` naming the file, leave its output folder byte for byte as it was, and never run
the code a pickle carries (a marker file it would create stays absent). Partition files are read by no
command; they are checked through :func:`fedtrain.partition.load_partition`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from numpy.lib import format as npy

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, save_checkpoint
from fedtrain.errors import DataFormatError
from fedtrain.io import write_json
from fedtrain.models import build_model
from fedtrain.partition import load_partition
from fedtrain.validate import MAX_NPZ_MEMBER_BYTES
from landscape.report.presets import REPRODUCE_PRESETS
from landscape.report.reproduce import plan_runs
from landscape.surface.record import Surface, save_surface

TINY = ["--dataset", "synthetic", "--model", "mlp", "--num-clients", "6", "--samples-per-client", "30",
        "--clients-per-round", "2", "--batch-size", "16", "--rounds", "4", "--eval-every", "2", "--threads", "1"]
MARKER_NAME = "PWNED"


class _Exploit:
    """Unpickling this would run ``touch <marker>``: every reader must refuse it first."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- the valid files every case starts from ---------------------------------------------------------

def _surface(kind: str = "random", labels: list[str] | None = None) -> Surface:
    x = np.linspace(-1, 1, 3)
    values = {"train_loss": np.full((3, 3), 2.0), "train_acc": np.full((3, 3), 50.0),
              "train_loss_stderr": np.full((3, 3), 0.1), "train_acc_stderr": np.full((3, 3), 1.0)}
    meta = {"kind": kind, "bn": "eval", "num_examples": {"train": 60}}
    if labels:
        meta["labels"] = labels
        meta["directions"] = {"model_coordinates": [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]}
    return Surface(x, x.copy(), values, np.ones((3, 3), dtype=bool), meta)


HESSIAN = {"eigenvalues": [3.0, 2.0, 1.5, 1.0, 0.5], "ratio": 6.0, "residuals": [0.0] * 5, "converged": [True] * 5,
           "trace": {"estimate": 10.0, "stderr": 0.5, "method": "hutchpp", "num_matvecs": 12},
           "density": {"grid": [0.0, 1.0, 2.0], "values": [0.1, 0.5, 0.2]}, "hvps": {}, "seconds": {}, "config": {}, "errors": {}}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished tiny run (with analyses), a stand-alone and a partial surface, and a finished smoke reproduction."""
    root = tmp_path_factory.mktemp("faults")
    threads = torch.get_num_threads()
    trained = CliRunner().invoke(main, ["train", *TINY, "--out", str(root / "run")])
    torch.set_num_threads(threads)  # --threads 1 sets torch's count in this process
    assert trained.exit_code == 0, trained.output
    assert (root / "run" / "checkpoints" / "round_00003.pt").is_file()  # the SWA start of this plain run
    write_json(root / "run" / "analysis" / "hessian.json", HESSIAN)
    save_surface(_surface(), root / "run" / "analysis" / "surface.npz")
    save_surface(_surface(), root / "surface" / "surface.npz")
    partial = _surface()
    partial.done[1:] = False
    for values in partial.values.values():
        values[1:] = np.nan
    save_surface(partial, root / "partial" / "surface.npz")
    _fake_reproduction(root / "run", root / "repro")
    return root


def _fake_reproduction(run: Path, out: Path) -> None:
    """A smoke reproduction with every stage done (copies of the tiny run), so ``reproduce`` goes straight to reading."""
    settings = REPRODUCE_PRESETS["smoke"]
    write_json(out / "plan.json", {"preset": "smoke", "seeds": 1, "settings": settings.to_dict()})
    write_json(out / "reproduce.json", {"invocations": []})
    for spec in plan_runs(settings, 1):
        folder = spec.folder(out)
        shutil.copytree(run, folder, ignore=shutil.ignore_patterns("round_*.pt", "latest.pt"))
        write_json(folder / "config.json", spec.config.to_dict())
    for split, _ in settings.splits:
        save_surface(_surface("plane", ["FedAvg", "FedASAM", "FedASAM+SWA"]), out / "planes" / f"{split}-seed0" / "surface.npz")


@pytest.fixture()
def ws(base, tmp_path) -> Path:
    """A private copy of the valid files for one case; the reproduction (0.7 MB) only for the commands that read it."""
    shutil.copytree(base, tmp_path / "ws", ignore=shutil.ignore_patterns("repro"))
    return tmp_path / "ws"


def _with_reproduction(base: Path, ws: Path) -> None:
    shutil.copytree(base / "repro", ws / "repro")


# --- damages --------------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _binary(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 8)


def _content(value) -> Callable[[Path], None]:
    """Write ``value`` (text as it is, anything else as JSON) over the file."""
    return lambda path: path.write_text(value if isinstance(value, str) else json.dumps(value))


def _json_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        value = json.loads(path.read_text())
        value = edit(value) or value
        path.write_text(json.dumps(value))
    return damage


def _ckpt_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        raw = torch.load(path, weights_only=True)
        edit(raw)
        torch.save(raw, path)
    return damage


def _reshape(raw: dict) -> None:
    name = next(iter(raw["weights"]))
    raw["weights"][name] = raw["weights"][name].reshape(-1)[:-1].clone()


def _nan(raw: dict) -> None:
    name = next(k for k, v in raw["weights"].items() if v.is_floating_point())
    raw["weights"][name] = raw["weights"][name].clone()
    raw["weights"][name].view(-1)[0] = float("nan")


def _malicious_checkpoint(path: Path) -> None:
    torch.save({"format": "fedlandscape.checkpoint", "payload": _Exploit(path.parent.parent / MARKER_NAME)}, path)


def _set(key: str, value) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        *parents, last = key.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


@dataclass(frozen=True)
class Case:
    """One damage of a file and a fragment of the message that says what is wrong."""

    name: str
    damage: Callable[[Path], None]
    says: str


CHECKPOINT_CASES = [
    Case("zero-byte", _empty, "could not be read"),
    Case("truncated", _truncate, "truncated"),
    Case("not-zip", _binary, "not a complete zip archive"),
    Case("foreign-state-dict", lambda p: torch.save(build_model("mlp", input_shape=(1, 16, 16), num_classes=10).state_dict(), p),
         "not a fedlandscape checkpoint"),
    Case("malicious-pickle", _malicious_checkpoint, "cannot be loaded safely"),
    Case("round-x", _ckpt_edit(_set("round", "x")), "'round' must be an integer >= 0, got 'x'"),
    Case("round-negative", _ckpt_edit(_set("round", -5)), "'round' must be an integer >= 0, got -5"),
    Case("swa-count-abc", _ckpt_edit(_set("swa", {"weights": {}, "count": "abc"})), "swa 'count' must be an integer"),
    Case("kwargs-a-string", _ckpt_edit(_set("model.kwargs", "input_shape=[1,16,16]")), "model 'kwargs' must be a mapping"),
    Case("absurd-input-shape", _ckpt_edit(_set("model.kwargs.input_shape", [1, 10**6, 10**6])), "does not fit the data"),
    Case("absurd-hidden", _ckpt_edit(_set("model.kwargs.hidden", [10**9])), "more than the 100,000,000"),
    Case("kwargs-refused", _ckpt_edit(_set("model.kwargs.hidden", "abc")), "its model cannot be built (Model 'mlp' cannot be built"),
    Case("dataset-misfit", _ckpt_edit(_set("data.dataset", "fashion-mnist")), "does not fit the data"),
    Case("config-rounds-x", _ckpt_edit(_set("config.rounds", "x")), "rounds (--rounds) must be an integer >= 1, got 'x'"),
    Case("reshaped-weight", _ckpt_edit(_reshape), "do not fit model 'mlp'"),
    Case("nan-weights", _ckpt_edit(_nan), "non-finite values"),
]
RESUME_ONLY_CASES = [
    Case("round-beyond-run", _ckpt_edit(_set("round", 99)), "at round 99, beyond the run's 4 rounds"),
    Case("metrics-not-a-list", _ckpt_edit(_set("state.metrics", {"round": 1})), "state 'metrics' must be a list"),
    Case("metrics-beyond-round", _ckpt_edit(_set("state.metrics", [{"round": 50, "test_accuracy": 0.5, "test_loss": 1.0, "model": "global",
                                                                    "swa_count": 0}])), "round 50 is beyond the 4 rounds"),
]


def _json_cases(wrong: Case | None = None, missing: Case | None = None) -> list[Case]:
    cases = [Case("zero-byte", _empty, "the file is empty"), Case("truncated", _truncate, "is not valid JSON"),
             Case("binary", _binary, "is not UTF-8 text"), Case("nan-constant", _content('{"a": NaN}'), "NaN is not JSON"),
             Case("list-not-object", _content([1, 2, 3]), "must be a mapping")]
    return cases + [c for c in (wrong, missing) if c is not None]


CONFIG_JSON_CASES = _json_cases(Case("wrong-type", _json_edit(_set("alpha", "abc")), "alpha (--alpha) must be"),
                                Case("unknown-key", _json_edit(_set("colour", "red")), "Unknown training setting"))
SUMMARY_CASES = _json_cases(Case("wrong-type", _json_edit(_set("last_k_mean_accuracy", "high")), "'last_k_mean_accuracy' must be"))
HESSIAN_CASES = _json_cases(Case("wrong-type", _json_edit(_set("eigenvalues", ["big"])), "'eigenvalues' must be"),
                            Case("missing-key", _json_edit(lambda v: {k: x for k, x in v.items() if k != "eigenvalues"}), "lacks the entry 'eigenvalues'"))
PLAN_CASES = _json_cases(Case("wrong-type", _json_edit(_set("seeds", "one")), "'seeds' must be an integer"),
                         Case("missing-key", _json_edit(lambda v: {k: x for k, x in v.items() if k != "settings"}), "lacks the entry 'settings'"))
HISTORY_CASES = _json_cases(Case("wrong-type", _json_edit(_set("invocations", "all")), "'invocations' must be a list"))
METRICS_CASES = [
    Case("truncated-line", lambda p: p.write_text(p.read_text()[:-15]), "is not valid JSON"),
    Case("binary", _binary, "is not UTF-8 text"),
    Case("list-line", _content("[1, 2]"), "evaluation 1 must be a mapping"),
    Case("missing-key", _content('{"round": 2}'), "lacks the entry 'test_accuracy'"),
    Case("wrong-type", _content('{"round": "two", "test_accuracy": 0.5}'), "'round' must be an integer"),
    Case("accuracy-out-of-range", _content('{"round": 2, "test_accuracy": 7}'), "'test_accuracy' must be a number between 0 and 1"),
]


def _surface_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with np.load(path, allow_pickle=False) as raw:
            arrays = {k: raw[k] for k in raw.files}
        edit(arrays)
        np.savez(path, **arrays)
    return damage


def _huge_header(path: Path) -> None:
    """A member whose npy header claims 10^12 float64 values (7 TiB) followed by 8 bytes."""
    stream = io.BytesIO()
    npy.write_array_header_1_0(stream, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("zz_values.npy", stream.getvalue() + b"\x00" * 8)


def _object_array(path: Path) -> None:
    with np.load(path, allow_pickle=False) as raw:
        arrays = {k: raw[k] for k in raw.files}
    arrays["train_loss"] = np.array([_Exploit(path.parent.parent / MARKER_NAME)], dtype=object)
    np.savez(path, **arrays)


def _all(key: str, value) -> Callable[[dict], None]:
    def edit(arrays: dict) -> None:
        arrays[key] = np.full_like(arrays[key], value)
    return edit


SURFACE_CASES = [
    Case("zero-byte", _empty, "could not be read"),
    Case("truncated", _truncate, "could not be read"),
    Case("foreign-npz", lambda p: np.savez(p, train_loss=np.zeros(3)), "not a fedlandscape surface file"),
    Case("huge-header", _huge_header, f"more than the {MAX_NPZ_MEMBER_BYTES:,} bytes"),
    Case("object-array-pickle", _object_array, "holds Python objects"),
    Case("values-of-another-shape", _surface_edit(lambda a: a.update(train_loss=np.ones((2, 2)))), "train_loss must be floating-point values of the grid's shape [3, 3]"),
    Case("2d-values-without-y", _surface_edit(lambda a: a.pop("ycoordinates")), "(2-D values need ycoordinates)"),
    Case("all-inf-loss", _surface_edit(_all("train_loss", np.inf)), "no finite loss at all"),
    Case("no-point-done", _surface_edit(_all("done", False)), "no point of its grid is done"),
    Case("nan-coordinates", _surface_edit(_all("xcoordinates", np.nan)), "xcoordinates must be a non-empty 1-D array of finite numbers"),
]

# A 1 KB "billion laughs": 9 levels of 9 aliases each would expand to 9^9 strings.
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
CONFIG_FILE_CASES = [
    Case("yaml-alias-bomb", _content(ALIAS_BOMB), "YAML anchor or alias"),
    Case("yaml-python-tag", lambda p: p.write_text(f"rounds: !!python/object/apply:os.system ['touch {p.parent / MARKER_NAME}']\n"),
         "could not be parsed as YAML"),
    Case("yaml-top-level-list", _content("- rounds\n- 3\n"), "its top level must be a mapping"),
    Case("yaml-binary", _binary, "is not UTF-8 text"),
    Case("yaml-syntax", _content("rounds: [3\n"), "could not be parsed as YAML"),
    Case("checkpoint-rounds-abc", _content('checkpoint_rounds: "abc"\n'), "checkpoint_rounds (--checkpoint-round) must be"),
    Case("data-dir-5", _content("data_dir: 5\n"), "data_dir (--data-dir) must be"),
    Case("alpha-abc", _content('alpha: "abc"\n'), "alpha (--alpha) must be"),
    Case("oversized", _content("# padding\n" * 200_000), "more than the 1,048,576"),
]
TOML_CASES = [
    Case("toml-syntax", _content("rounds = = 3\n"), "could not be parsed as TOML"),
    Case("toml-wrong-type", _content('rounds = "ten"\n'), "rounds (--rounds) must be an integer"),
    Case("toml-binary", _binary, "is not UTF-8 text"),
]


# --- the commands that read each kind ---------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """A CLI invocation reading ``target`` and writing (if it got that far) into ``out``."""

    name: str
    target: Callable[[Path], Path]
    args: Callable[[Path], list[str]]
    out: Callable[[Path], Path]
    unrecognised: tuple[str, ...] = ()  # cases `info` cannot recognise as a kind at all: it says so instead


def _first_run(ws: Path) -> Path:
    return plan_runs(REPRODUCE_PRESETS["smoke"], 1)[0].folder(ws / "repro")


def _reproduce_reading_final(ws: Path) -> list[str]:
    (_first_run(ws) / "analysis" / "hessian.json").unlink()  # so its Hessian stage reads final.pt
    return ["reproduce", "--preset", "smoke", "--out", str(ws / "repro")]


REPRODUCE = ["reproduce", "--preset", "smoke"]
RESUME = Command("train --resume", lambda ws: ws / "run" / "checkpoints" / "latest.pt",
                 lambda ws: ["train", "--resume", str(ws / "run"), "--threads", "1"], lambda ws: ws / "run")
CHECKPOINT_COMMANDS = [
    RESUME,
    Command("train --init-from", lambda ws: ws / "run" / "checkpoints" / "round_00003.pt",
            lambda ws: ["train", *TINY, "--swa", "--init-from", str(ws / "run" / "checkpoints" / "round_00003.pt"), "--out", str(ws / "new")],
            lambda ws: ws / "new"),
    Command("hessian", lambda ws: ws / "run" / "checkpoints" / "final.pt",
            lambda ws: ["hessian", str(ws / "run" / "checkpoints" / "final.pt"), "--samples", "60", "--out", str(ws / "out" / "h.json")],
            lambda ws: ws / "out"),
    Command("plot-surface", lambda ws: ws / "run" / "checkpoints" / "final.pt",
            lambda ws: ["plot-surface", str(ws / "run" / "checkpoints" / "final.pt"), "--steps", "3", "--samples", "60", "--out", str(ws / "out")],
            lambda ws: ws / "out"),
    Command("reproduce", lambda ws: _first_run(ws) / "checkpoints" / "final.pt", _reproduce_reading_final, lambda ws: ws / "repro"),
]
FIGURES = lambda ws: ["figures", str(ws / "run"), "--out", str(ws / "figs")]  # noqa: E731
RUN_FILE_COMMANDS = {
    name: [Command("figures", lambda ws, n=name: ws / "run" / n, FIGURES, lambda ws: ws / "figs"),
           Command("reproduce", lambda ws, n=name: _first_run(ws) / n, lambda ws: [*REPRODUCE, "--out", str(ws / "repro")], lambda ws: ws / "repro")]
    for name in ("config.json", "summary.json", "metrics.jsonl", "analysis/hessian.json", "analysis/surface.npz")
}
RUN_FILE_COMMANDS["config.json"].append(Command("train --resume", lambda ws: ws / "run" / "config.json", RESUME.args, RESUME.out))
SURFACE_COMMANDS = [
    *RUN_FILE_COMMANDS["analysis/surface.npz"],
    Command("plot-surface --from", lambda ws: ws / "surface" / "surface.npz",
            lambda ws: ["plot-surface", "--from", str(ws / "surface" / "surface.npz"), "--out", str(ws / "out")], lambda ws: ws / "out"),
    Command("plot-surface --resume", lambda ws: ws / "partial" / "surface.npz",
            lambda ws: ["plot-surface", str(ws / "run" / "checkpoints" / "final.pt"), "--steps", "3", "--samples", "60",
                        "--resume", "--out", str(ws / "partial")], lambda ws: ws / "partial"),
    Command("reproduce (plane)", lambda ws: ws / "repro" / "planes" / "heterogeneous-seed0" / "surface.npz",
            lambda ws: [*REPRODUCE, "--out", str(ws / "repro")], lambda ws: ws / "repro"),
]
REPRO_COMMANDS = {name: Command("reproduce", lambda ws, n=name: ws / "repro" / n, lambda ws: [*REPRODUCE, "--out", str(ws / "repro")],
                                lambda ws: ws / "repro") for name in ("plan.json", "reproduce.json")}
CONFIG_FILE = Command("train --config", lambda ws: ws / "cfg.yaml",
                      lambda ws: ["train", *TINY, "--config", str(ws / "cfg.yaml"), "--out", str(ws / "new")], lambda ws: ws / "new")
CONFIG_TOML = Command("train --config", lambda ws: ws / "cfg.toml",
                      lambda ws: ["train", *TINY, "--config", str(ws / "cfg.toml"), "--out", str(ws / "new")], lambda ws: ws / "new")
CIFAR = Command("train (CIFAR batch)", lambda ws: ws / "cifar-10-batches-py" / "data_batch_1",
                lambda ws: ["train", "--dataset", "cifar10", "--data-dir", str(ws), "--model", "cnn", "--rounds", "1", "--threads", "1",
                            "--out", str(ws / "new")], lambda ws: ws / "new")
CIFAR_HESSIAN = Command("hessian (CIFAR batch)", CIFAR.target,
                        lambda ws: ["hessian", str(ws / "cifar.pt"), "--data-dir", str(ws), "--out", str(ws / "out" / "h.json")],
                        lambda ws: ws / "out")


def _cifar_batches(ws: Path) -> None:
    """A CIFAR-10 folder of empty batches (damaged below) and a CIFAR-10 checkpoint (3 MB: made only for these cases)."""
    model = build_model("cnn", input_shape=(3, 32, 32), num_classes=10, seed=0)
    save_checkpoint(Checkpoint(model_name="cnn", model_kwargs={"input_shape": [3, 32, 32], "num_classes": 10},
                               weights=model.state_dict(), dataset="cifar10"), ws / "cifar.pt")
    folder = ws / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(b"")


def _malicious_pickle(path: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({b"data": _Exploit(path.parent.parent / MARKER_NAME), b"labels": [0]}))


CIFAR_CASES = [Case("malicious-pickle", _malicious_pickle, "refusing to load posix.system"),
               Case("truncated", lambda p: p.write_bytes(b"\x80\x04\x95"), "is not a CIFAR python-version batch")]


def _pairs(commands: list[Command], cases: list[Case], kind: str, *, skip: tuple[str, ...] = ()) -> list:
    return [pytest.param(c, k, id=f"{kind}:{c.name}:{k.name}") for c in commands for k in cases if k.name not in skip]


UNRECOGNISED = "is not something this toolkit wrote"


def _info(target: Callable[[Path], Path], arg: Callable[[Path], Path] | None = None, unrecognised: tuple[str, ...] = ()) -> Command:
    """``landscape info`` on a file (or the folder ``arg`` holding it); it writes nothing, so the whole workspace must stay."""
    return Command("info", target, lambda ws: ["info", str((arg or target)(ws))], lambda ws: ws, unrecognised)


INFO_CHECKPOINT = _info(lambda ws: ws / "run" / "checkpoints" / "final.pt", unrecognised=("zero-byte", "truncated", "not-zip"))
INFO_RUN = {name: _info(lambda ws, n=name: ws / "run" / n, lambda ws: ws / "run") for name in ("config.json", "summary.json", "metrics.jsonl")}
INFO_HESSIAN = _info(lambda ws: ws / "run" / "analysis" / "hessian.json", unrecognised=("list-not-object", "missing-key"))
INFO_SURFACE = _info(lambda ws: ws / "surface" / "surface.npz")
INFO_REPRO = {name: _info(lambda ws, n=name: ws / "repro" / n, lambda ws: ws / "repro") for name in ("plan.json", "reproduce.json")}


CLI_CASES = [
    *_pairs(CHECKPOINT_COMMANDS, CHECKPOINT_CASES, "checkpoint"),
    # info describes a plain state dict (that is what it is), so that case is not a damage for it
    *_pairs([INFO_CHECKPOINT], CHECKPOINT_CASES, "checkpoint", skip=("foreign-state-dict",)),
    *_pairs([RESUME], RESUME_ONLY_CASES, "checkpoint"),
    *_pairs([*RUN_FILE_COMMANDS["config.json"], INFO_RUN["config.json"]], CONFIG_JSON_CASES, "config.json"),
    *_pairs([*RUN_FILE_COMMANDS["summary.json"], INFO_RUN["summary.json"]], SUMMARY_CASES, "summary.json"),
    *_pairs([*RUN_FILE_COMMANDS["metrics.jsonl"], INFO_RUN["metrics.jsonl"]], METRICS_CASES, "metrics.jsonl"),
    *_pairs([*RUN_FILE_COMMANDS["analysis/hessian.json"], INFO_HESSIAN], HESSIAN_CASES, "hessian.json"),
    *_pairs([*SURFACE_COMMANDS, INFO_SURFACE], SURFACE_CASES, "surface.npz"),
    *_pairs([REPRO_COMMANDS["plan.json"], INFO_REPRO["plan.json"]], PLAN_CASES, "plan.json"),
    *_pairs([REPRO_COMMANDS["reproduce.json"], INFO_REPRO["reproduce.json"]], HISTORY_CASES, "reproduce.json"),
    *_pairs([CONFIG_FILE], CONFIG_FILE_CASES, "config file"),
    *_pairs([CONFIG_TOML], TOML_CASES, "config file"),
    *_pairs([CIFAR, CIFAR_HESSIAN], CIFAR_CASES, "CIFAR batch"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative path -> SHA-256 of its bytes); empty when it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("command", "case"), CLI_CASES)
def test_a_damaged_file_is_refused_by_every_command_that_reads_it(command: Command, case: Case, ws: Path, base: Path):
    if "repro" in command.target(Path("ws")).parts:
        _with_reproduction(base, ws)
    target = command.target(ws)
    if command.name.endswith("(CIFAR batch)"):
        _cifar_batches(ws)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("rounds: 3\n")  # a valid config file, damaged below
    args = command.args(ws)  # may prepare the workspace (reproduce reading a checkpoint)
    case.damage(target)
    out, before = command.out(ws), _snapshot(command.out(ws))
    threads = torch.get_num_threads()
    result = CliRunner().invoke(main, args)
    torch.set_num_threads(threads)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"{type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "\n\n" not in result.stderr, result.stderr
    assert str(target) in error or target.name in error, error
    assert (UNRECOGNISED if case.name in command.unrecognised else case.says) in error, error
    assert _snapshot(out) == before
    assert not list(ws.rglob(MARKER_NAME)) and not Path(MARKER_NAME).exists()


def test_the_valid_files_are_read_as_before(ws: Path, base: Path):
    """The control: the same files, undamaged, pass every reader the cases above go through."""
    _with_reproduction(base, ws)
    from fedtrain.checkpoint import load_checkpoint
    from fedtrain.config import load_config_file
    from fedtrain.run import load_run_config
    from landscape.plots.paper import collect_planes, collect_runs
    from landscape.reproduction_files import read_history, read_plan
    from landscape.surface.record import load_surface

    for name in ("latest.pt", "round_00003.pt", "final.pt"):
        assert load_checkpoint(ws / "run" / "checkpoints" / name).round in (3, 4)
    _cifar_batches(ws)
    assert load_checkpoint(ws / "cifar.pt").model_name == "cnn"
    assert load_run_config(ws / "run").rounds == 4
    (run,) = collect_runs([ws / "run"])
    assert run.hessian["eigenvalues"][0] == 3.0 and run.surface.complete and len(run.metrics) == 2
    assert len(collect_runs([ws / "repro" / "runs"])) == len(plan_runs(REPRODUCE_PRESETS["smoke"], 1))
    assert len(collect_planes([ws / "repro" / "planes"])) == len(REPRODUCE_PRESETS["smoke"].splits)
    assert read_plan(ws / "repro" / "plan.json")["preset"] == "smoke" and read_history(ws / "repro" / "reproduce.json") == []
    for path in (ws / "run", ws / "repro", ws / "run" / "checkpoints" / "final.pt", ws / "surface" / "surface.npz",
                 ws / "run" / "analysis" / "hessian.json"):
        assert CliRunner().invoke(main, ["info", str(path)]).exit_code == 0, path
    assert load_surface(ws / "surface" / "surface.npz").complete and load_surface(ws / "partial" / "surface.npz").done.sum() == 3
    (ws / "cfg.yaml").write_text("rounds: 3\nalpha: 0.5\n")
    assert load_config_file(ws / "cfg.yaml") == {"rounds": 3, "alpha": 0.5}


# --- partition files (no command reads them: the library's reader) -------------------------------------

PARTITION_CASES = [*_json_cases(Case("wrong-type", _json_edit(_set("num_classes", "ten")), "'num_classes' must be an integer"),
                                Case("missing-key", _json_edit(lambda v: {k: x for k, x in v.items() if k != "clients"}),
                                     "lacks the entry 'clients'")),
                   Case("histogram-length", _json_edit(lambda v: v["clients"][0].update(label_histogram=[1])),
                        "client 0 'label_histogram' must be a list of 10 items"),
                   Case("negative-index", _json_edit(lambda v: v["clients"][0]["indices"].__setitem__(0, -1)),
                        "client 0 'indices' must be a list of items, each an integer >= 0")]


@pytest.mark.parametrize("case", PARTITION_CASES, ids=lambda c: c.name)
def test_a_damaged_partition_file_is_refused(case: Case, ws: Path):
    path = ws / "run" / "partition.json"
    assert load_partition(path).num_clients == 6
    case.damage(path)
    with pytest.raises(DataFormatError, match=re.escape(case.says)) as err:
        load_partition(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)

