"""DirectoryLock: one writer per folder, a refused second writer told who holds it, a dead holder's lock taken over."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedtrain import lock as lock_module
from fedtrain.errors import DirectoryBusyError, LandscapeError
from fedtrain.lock import LOCK_NAME, DirectoryLock

HOLD = """
import sys, time
from fedtrain.lock import DirectoryLock
with DirectoryLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    """A process that locks ``folder`` and sleeps; returns once it holds the lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_at_once_and_told_who_holds_the_folder(tmp_path):
    holder = hold_in_another_process(tmp_path / "out")
    try:
        start = time.monotonic()
        with pytest.raises(DirectoryBusyError) as refused:
            with DirectoryLock(tmp_path / "out"):
                pytest.fail("the body must not run while another process holds the lock")
        assert time.monotonic() - start < 1.0  # refused, not waited for
        message = str(refused.value)
        assert f"process {holder.pid} on host {socket.gethostname()}" in message
        assert "started" in message and "command:" in message and "choose another output folder" in message
        assert "\n" not in message and isinstance(refused.value, LandscapeError)
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_leaves_a_lock_that_is_taken_over(tmp_path):
    holder = hold_in_another_process(tmp_path / "out")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "out" / LOCK_NAME).is_file()  # its record stays behind; the kernel dropped its lock
    with DirectoryLock(tmp_path / "out") as taken:
        assert taken.taken_over is not None and taken.taken_over.pid == holder.pid
        record = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()


def test_a_clean_exit_removes_the_lock_and_a_folder_it_created_for_nothing(tmp_path):
    with DirectoryLock(tmp_path / "new" / "deeper") as held:
        assert held.path.is_file() and held.taken_over is None
    assert not (tmp_path / "new").exists()  # nothing written: no trace of the attempt
    with DirectoryLock(tmp_path / "kept"):
        (tmp_path / "kept" / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["result.json"]
    (tmp_path / "existing").mkdir()
    with DirectoryLock(tmp_path / "existing"):
        pass
    assert (tmp_path / "existing").is_dir()  # a folder the user made is never removed


def test_the_lock_is_released_when_the_body_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with DirectoryLock(tmp_path / "out"):
            (tmp_path / "out" / "a").write_text("")
            raise RuntimeError("boom")
    with DirectoryLock(tmp_path / "out") as again:
        assert again.taken_over is None


def test_a_process_may_reenter_a_lock_it_holds(tmp_path):
    with DirectoryLock(tmp_path / "out"):
        with DirectoryLock(tmp_path / "out"):  # an API call inside a command that locked the same folder
            pass
        assert (tmp_path / "out" / LOCK_NAME).is_file()  # the inner exit did not release the outer lock
    assert not (tmp_path / "out").exists()


def test_a_record_left_by_another_host_is_not_taken_over_silently(tmp_path):
    (tmp_path / "out").mkdir()
    record = {"pid": 4242, "host": "node-17.cluster", "started": "2026-01-01 00:00:00 UTC", "command": "landscape train"}
    (tmp_path / "out" / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(DirectoryBusyError) as refused:
        with DirectoryLock(tmp_path / "out"):
            pytest.fail("must not run")
    message = str(refused.value)
    assert "process 4242 on host node-17.cluster" in message and "another host" in message
    assert "cannot be checked" in message and f"delete {tmp_path / 'out' / LOCK_NAME}" in message
    (tmp_path / "out" / LOCK_NAME).unlink()  # what the message says to do once that process is known to be gone
    with DirectoryLock(tmp_path / "out"):
        pass


def test_a_filesystem_without_locks_is_a_clear_error(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    with pytest.raises(DirectoryBusyError, match="does not support file locks .*local disk"):
        with DirectoryLock(tmp_path / "out"):
            pytest.fail("must not run")
    assert not (tmp_path / "out").exists()  # no trace of the attempt


def test_a_lock_file_replaced_between_open_and_lock_is_locked_again(tmp_path, monkeypatch):
    """A holder that releases unlinks its file; whoever opened that file before must lock the new one."""
    (tmp_path / "out").mkdir()
    real_flock, calls = lock_module.fcntl.flock, []

    def flock_after_a_release(fd, operation):
        if not calls:  # the first file we opened is unlinked and replaced before we lock it
            (tmp_path / "out" / LOCK_NAME).unlink()
            (tmp_path / "out" / LOCK_NAME).write_text("")
        calls.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_a_release)
    with DirectoryLock(tmp_path / "out"):
        assert len(calls) == 2
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_a_folder_inside_one_another_process_writes_is_refused(tmp_path):
    holder = hold_in_another_process(tmp_path / "reproduction")
    try:
        with pytest.raises(DirectoryBusyError, match=f"lies inside {tmp_path / 'reproduction'}, which is being written by process {holder.pid}"):
            with DirectoryLock(tmp_path / "reproduction" / "figures"):
                pytest.fail("must not run")
        assert not (tmp_path / "reproduction" / "figures").exists()
    finally:
        holder.kill()
        holder.wait()
    with DirectoryLock(tmp_path / "reproduction" / "figures"):  # its record stays, but its process is gone
        pass
    with DirectoryLock(tmp_path / "outer"), DirectoryLock(tmp_path / "outer" / "inner"):  # this process's own folders nest
        pass


def test_taking_over_a_dead_holders_lock_deletes_the_temporaries_of_its_cut_short_writes(tmp_path):
    other = hold_in_another_process(tmp_path / "out" / "busy")  # started before: a live writer of a subfolder
    holder = hold_in_another_process(tmp_path / "out")
    try:
        (tmp_path / "out" / ".surface.npz.ab12cd_9.tmp").write_bytes(b"half a file")
        (tmp_path / "out" / "run" / "analysis").mkdir(parents=True)
        (tmp_path / "out" / "run" / "analysis" / ".hessian.json.x1y2z3_4.tmp").write_bytes(b"{")
        (tmp_path / "out" / "busy" / ".h.json.abcdefgh.tmp").write_bytes(b"being written")
        (tmp_path / "out" / "notes.tmp").write_text("the user's")  # not a name an atomic write makes
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with DirectoryLock(tmp_path / "out"):
            left = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
            assert left == [LOCK_NAME, "busy/.h.json.abcdefgh.tmp", f"busy/{LOCK_NAME}", "notes.tmp"]
    finally:
        other.kill()
        other.wait()
