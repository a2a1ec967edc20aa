"""Faults on the writing side: --overwrite that keeps what is not ours, operating-system errors on write, paths built from names."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedlandscape_cli import main
from fedtrain.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError, DataNotFoundError, OutputError
from fedtrain.io import read_json, write_json
from fedtrain.lock import LOCK_NAME
from fedtrain.models import build_model
from fedtrain.run import train
from tests.fedtrain.test_run import _one_thread  # noqa: F401 (autouse fixture: one torch thread, restored)


def tiny(**changes) -> TrainConfig:
    base = dict(dataset="synthetic", model="mlp", model_kwargs={"hidden": [8]}, num_clients=4, samples_per_client=20,
                clients_per_round=2, rounds=2, batch_size=10, eval_every=1, seed=3)
    return TrainConfig(**{**base, **changes})


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --overwrite


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_deletes_nothing(tmp_path):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "config.json").write_text('{"my": "experiment"}')
    (mine / "checkpoints" / "mine.pt").write_bytes(b"weights I trained elsewhere")
    before = snapshot(mine)
    with pytest.raises(ConfigError, match="replaces only a training run written by this toolkit.*nothing was deleted"):
        train(tiny(), mine, overwrite=True)
    assert snapshot(mine) == before


def test_overwrite_refuses_a_run_folder_holding_a_checkpoint_of_the_user(tmp_path):
    train(tiny(), tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "mine.pt").write_bytes(b"not ours")
    before = snapshot(tmp_path / "run")
    with pytest.raises(ConfigError, match="checkpoints/ holds files this toolkit did not write: mine.pt"):
        train(tiny(rounds=3), tmp_path / "run", overwrite=True)
    assert snapshot(tmp_path / "run") == before


def test_overwrite_keeps_the_previous_run_when_the_new_one_cannot_start(tmp_path):
    train(tiny(), tmp_path / "run")
    before = snapshot(tmp_path / "run")
    assert {"summary.json", "checkpoints/final.pt"} <= set(before)
    with pytest.raises(DataNotFoundError):
        train(tiny(dataset="cifar10", data_dir=str(tmp_path / "no-data")), tmp_path / "run", overwrite=True)
    assert snapshot(tmp_path / "run") == before  # final.pt and summary.json are still the old run's


def test_overwrite_replaces_a_run_of_ours_and_only_its_files(tmp_path):
    train(tiny(), tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    train(tiny(rounds=3), tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt").round == 3
    assert not (tmp_path / "run" / "checkpoints" / "round_00001.pt").exists()  # the old run's kept rounds are gone


# operating-system errors on write


def one_paragraph(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)  # a ClickException, nothing raw
    error = result.output[result.output.index("Error:"):].strip()
    assert "\n" not in error
    return error


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes: none may stay behind after a failure."""
    return sorted(str(p) for p in folder.rglob("*.tmp"))


TINY = ["--dataset", "synthetic", "--model", "mlp", "--num-clients", "4", "--samples-per-client", "20",
        "--clients-per-round", "2", "--batch-size", "10", "--rounds", "2", "--eval-every", "1", "--threads", "1"]


def train_cli(*args: str):
    return CliRunner().invoke(main, ["train", *args])


@pytest.mark.parametrize("call", ["replace", "fsync"])
def test_no_space_in_an_atomic_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch, call):
    write_json(tmp_path / "summary.json", {"old": True})

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, call, no_space)
    with pytest.raises(OutputError) as refused:
        write_json(tmp_path / "summary.json", {"new": True})
    message = str(refused.value)
    assert f"Cannot write {tmp_path / 'summary.json'}: no space left on the device" in message
    assert "the previous file there is kept intact" in message and "\n" not in message
    assert isinstance(refused.value, OSError)  # callers that handle OSError still can
    monkeypatch.undo()
    assert read_json(tmp_path / "summary.json") == {"old": True} and leftovers(tmp_path) == []


def test_no_space_during_training_is_one_paragraph_and_leaves_only_complete_files(tmp_path, monkeypatch):
    real_replace = os.replace

    def full_at_the_first_checkpoint(src, dst, *args, **kwargs):
        if str(dst).endswith("latest.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_at_the_first_checkpoint)
    error = one_paragraph(train_cli(*TINY, "--out", str(tmp_path / "run")))
    assert f"Cannot write {tmp_path / 'run' / 'checkpoints' / 'latest.pt'}: no space left on the device" in error
    assert "nothing was written there" in error
    monkeypatch.undo()
    assert leftovers(tmp_path) == [] and not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()
    assert read_json(tmp_path / "run" / "config.json")["rounds"] == 2  # what was written is whole
    assert not (tmp_path / "run" / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("train", [*TINY, "--out", "{blocker}/run"]),
        ("partition", ["--dataset", "synthetic", "--scheme", "iid", "--num-clients", "4", "--out", "{blocker}/p.json"]),
        ("hessian", ["{checkpoint}", "--samples", "20", "--top-k", "1", "--out", "{blocker}/h.json"]),
        ("plot-surface", ["{checkpoint}", "--steps", "3", "--samples", "20", "--out", "{blocker}/surface"]),
    ],
)
def test_an_output_path_below_a_regular_file_is_one_paragraph(tmp_path, command, args):
    blocker = tmp_path / "afile"
    blocker.write_text("the user's file")
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    result = CliRunner().invoke(main, [command, *(a.format(blocker=blocker, checkpoint=ckpt) for a in args)])
    error = one_paragraph(result)
    assert f"{blocker} is a regular file, not a folder" in error and "nothing was written there" in error
    assert blocker.read_text() == "the user's file" and leftovers(tmp_path) == []


def tiny_checkpoint(path: Path) -> str:
    kwargs = {"input_shape": [1, 16, 16], "num_classes": 10, "hidden": [4]}
    model = build_model("mlp", **kwargs, seed=0)
    save_checkpoint(Checkpoint(model_name="mlp", model_kwargs=kwargs, weights=model.state_dict(), dataset="synthetic"), path)
    return str(path)


@pytest.fixture()
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs: a real full disk. Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped, and the
    monkeypatched ENOSPC tests above still run."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_is_one_paragraph_and_every_file_left_is_whole(tiny_tmpfs):
    result = train_cli(*TINY, "--out", str(tiny_tmpfs / "run"))
    error = one_paragraph(result)
    assert "no space left on the device" in error and str(tiny_tmpfs / "run") in error
    assert leftovers(tiny_tmpfs) == []
    for file in (tiny_tmpfs / "run").rglob("*"):
        if file.suffix == ".json":
            read_json(file)
        elif file.suffix == ".pt":
            load_checkpoint(file)


# paths built from names


@pytest.mark.parametrize("name", ["...pt", ".pt"])
def test_surface_folders_named_after_checkpoints_stay_inside_out(tmp_path, name):
    """`...pt` has the label `..`: its surface used to land in the parent of --out."""
    (tmp_path / "X").mkdir()
    a, odd = tiny_checkpoint(tmp_path / "a.pt"), tiny_checkpoint(tmp_path / "X" / name)
    out = tmp_path / "X" / "out"
    result = CliRunner().invoke(main, ["plot-surface", a, odd, "--steps", "3", "--samples", "20", "--plot", "heatmap",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("surface.npz"))
    assert all(path.startswith("X/out/") for path in written) and len(written) == 2, written
    labels = [row["label"] for row in json.loads(result.stdout)["surfaces"]]
    assert labels == ["a", Path(name).stem]  # the figures still show the file's own name


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--resume", "{run}"],
        ["hessian", "{ckpt}", "--samples", "20", "--top-k", "1", "--out", "{tmp}/h.json"],
        ["plot-surface", "{ckpt}", "--steps", "3", "--samples", "20", "--plot", "heatmap", "--out", "{tmp}/surface"],
        ["partition", "--dataset", "synthetic", "--scheme", "iid", "--num-clients", "4", "--out", "{tmp}/p.json"],
    ],
    ids=lambda args: args[0] + (" --resume" if "--resume" in args else ""),
)
def test_no_space_is_one_paragraph_for_every_command_that_writes(tmp_path, monkeypatch, args):
    train(tiny(), tmp_path / "run")
    ckpt = tiny_checkpoint(tmp_path / "c.pt")
    before = snapshot(tmp_path / "run")

    def no_space(src, dst, *rest, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    result = CliRunner().invoke(main, [a.format(run=tmp_path / "run", ckpt=ckpt, tmp=tmp_path) for a in args])
    error = one_paragraph(result)
    assert "no space left on the device" in error and f"Cannot write {tmp_path}" in error
    monkeypatch.undo()
    assert leftovers(tmp_path) == [] and snapshot(tmp_path / "run") == before
