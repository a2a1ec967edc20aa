"""One writer per directory: an exclusive lock file inside every folder a command writes, released by the kernel when its holder dies.

:class:`DirectoryLock` takes ``fcntl.flock`` on ``DIR/.landscape.lock`` (never waiting) and writes its
holder into it: PID, host, start time (UTC) and command line. A second writer is refused at once with
:class:`~fedtrain.errors.DirectoryBusyError` naming the holder. The kernel drops a ``flock`` when the
process holding it exits for any reason, SIGKILL included, so a crashed holder leaves no lock, only its
record: the next writer takes over, keeps that record as :attr:`DirectoryLock.taken_over` and deletes the
temporary files of atomic writes the dead holder left in the folder.

Shared filesystems: NFS (Linux >= 2.6.12) and Lustre/GPFS with flock enabled carry the lock to every
host. Where a filesystem keeps ``flock`` local to one host (NFS mounted ``local_lock=all``, sshfs...), a
writer on another host cannot be seen through the kernel; its record still can. So a record left by
another host whose lock this host can take is never taken over silently: it is refused, saying that
whether that process still runs cannot be checked from here and how to proceed once it is known to be
gone. A folder inside one that a live process of this host has locked (``figures`` into a reproduction
being run) is refused too. A clean exit removes the lock file (and the folder, if the lock created it and nothing else was
written), so a finished command leaves no trace of its lock.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from fedtrain.errors import DirectoryBusyError
from fedtrain.io import write_error

__all__ = ["LOCK_NAME", "LockHolder", "DirectoryLock", "file_lock", "holds_lock", "remove_temporaries"]

F = TypeVar("F", bound=Callable[..., Any])

LOCK_NAME = ".landscape.lock"
_RECORD_BYTES = 64 * 1024  # a holder record is a few hundred bytes; a longer file is not ours


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a directory lock."""

    pid: int
    host: str
    started: str
    command: str

    @classmethod
    def this_process(cls) -> LockHolder:
        """The record of the calling process."""
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return cls(pid=os.getpid(), host=socket.gethostname(), started=started, command=" ".join(sys.argv) or "python")

    @property
    def is_this_process(self) -> bool:
        """Whether the record is the calling process's own (a lock it already holds)."""
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def describe(self) -> str:
        """``process 123 on host h (started ..., command: ...)``."""
        return f"process {self.pid} on host {self.host} (started {self.started}, command: {self.command[:200]})"


def _read_holder(fd: int) -> LockHolder | None:
    """The record in an open lock file; ``None`` when it is empty or not a record (a holder still writing it)."""
    raw = os.pread(fd, _RECORD_BYTES, 0)
    try:
        data = json.loads(raw.decode("utf-8"))
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]), started=str(data["started"]),
                          command=str(data["command"]))
    except (ValueError, KeyError, TypeError):
        return None


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder unlinks it between our open and our lock)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _alive(pid: int) -> bool:
    """Whether a process of this host has that PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _writer_above(start: Path) -> tuple[Path, LockHolder] | None:
    """A live process of this host (not this one) that locked ``start`` or a folder containing it, if any."""
    for folder in (start, *start.parents):
        holder = _holder_of(folder)
        if _another_live_process(holder):
            return folder, holder  # type: ignore[return-value]
    return None


def remove_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Delete the temporary files that atomic writes (:func:`fedtrain.io.atomic_write_bytes`) killed mid-write left under ``folder``.

    Only for a folder whose lock was just taken over from a dead holder, which wrote everything below it:
    subfolders too (a reproduction's runs and analyses), except a subfolder whose own lock names a live
    process. With ``name``, only that file's temporaries, in ``folder`` itself. Returns the files deleted.
    """
    # mkstemp's names: ".<target name>.<8 random characters>.tmp"
    pattern = re.compile(rf"\.{re.escape(name) if name else '.+'}\.[a-z0-9_]{{8}}\.tmp")
    removed = []
    for here, subfolders, files in os.walk(folder):
        if name is not None:
            subfolders.clear()
        subfolders[:] = [d for d in subfolders if not _another_live_process(_holder_of(Path(here) / d))]
        for file in (Path(here) / f for f in files if pattern.fullmatch(f)):
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


def _holder_of(folder: Path) -> LockHolder | None:
    """The record in ``folder``'s lock file, if there is one."""
    try:
        with open(folder / LOCK_NAME, "rb") as handle:
            return _read_holder(handle.fileno())
    except OSError:
        return None


def _another_live_process(holder: LockHolder | None) -> bool:
    """Whether a lock record names a live process of this host other than this one."""
    return holder is not None and holder.host == socket.gethostname() and holder.pid != os.getpid() and _alive(holder.pid)


def _missing_dirs(directory: Path) -> list[Path]:
    """The folders that creating ``directory`` adds, deepest first."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


class DirectoryLock:
    """Exclusive use of ``directory`` by this process while the ``with`` block runs.

    Re-entering a lock this process already holds (an API call inside a command that locked the same
    folder) is allowed and does nothing. The folder is created when missing. With ``name`` (``.x.npz.lock``)
    the lock covers one output file of the folder rather than the folder, so that two commands may write
    two files side by side.

    Attributes:
        directory: the locked folder.
        taken_over: the record of a holder that died without releasing (``None`` when the lock was free).
    """

    def __init__(self, directory: str | os.PathLike[str], *, name: str = LOCK_NAME) -> None:
        self.directory = Path(directory)
        self.name = name
        # what the messages name: the folder, or the one file (".surface.npz.lock" -> surface.npz)
        self.subject = self.directory if name == LOCK_NAME else self.directory / name.removeprefix(".").removesuffix(".lock")
        self.taken_over: LockHolder | None = None
        self._fd: int | None = None
        self._created: list[Path] = []

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.directory / self.name

    def __enter__(self) -> DirectoryLock:
        folder = self.directory.resolve()
        if (above := _writer_above(folder if self.name != LOCK_NAME else folder.parent)) is not None:
            raise DirectoryBusyError(
                f"{self.subject} lies inside {above[0]}, which is being written by {above[1].describe()}. Two commands "
                "writing one folder would mix their files, so this one stopped before writing anything. Wait for that "
                "process to finish (or stop it), or choose an output folder outside it."
            )
        self._created = _missing_dirs(self.directory)
        while True:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as err:
                raise write_error(self.directory, err, folder=True) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if holder is not None and holder.is_this_process:
                    self._created = []
                    return self  # nested: the outer lock of this process releases it
                raise DirectoryBusyError(self._busy_message(holder)) from None
            except OSError as err:
                os.close(fd)
                self._remove_what_was_made()
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise DirectoryBusyError(
                        f"Cannot lock {self.directory}: its filesystem does not support file locks ({err.strerror}), so "
                        "this command cannot make sure that no other process writes there at the same time. Write to a "
                        "folder on a local disk (or a shared filesystem mounted with lock support), then copy the results."
                    ) from None
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the file we locked was released and unlinked meanwhile: lock the current one
        previous = _read_holder(fd)
        if previous is not None and previous.host != socket.gethostname():
            os.close(fd)
            raise DirectoryBusyError(
                f"{self.subject} is marked as written by {previous.describe()}, another host. Its lock is not "
                "visible from here (this filesystem may keep locks local to each host), so whether that process still "
                f"runs cannot be checked. Wait for it to finish; if you are sure it no longer runs, delete {self.path} "
                "and run this command again."
            )
        self.taken_over = previous  # same host and the kernel let us lock: its holder has exited
        record = json.dumps(asdict(LockHolder.this_process())).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        if previous is not None:  # the dead holder may have been killed mid-write
            remove_temporaries(self.directory, None if self.name == LOCK_NAME else self.subject.name)
        return self

    def _busy_message(self, holder: LockHolder | None) -> str:
        who = "another process that has not recorded itself yet" if holder is None else holder.describe()
        where = ("" if holder is None or holder.host == socket.gethostname()
                 else " That host is not this one, so the process cannot be inspected from here.")
        return (f"{self.subject} is being written by {who}.{where} Two commands writing one folder would mix their "
                f"files, so this one stopped before writing anything. Wait for that process to finish (or stop it), "
                f"or choose another output folder.")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock: a process that opened the old file sees it is gone and retries.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        self._remove_what_was_made()

    def _remove_what_was_made(self) -> None:
        """Delete the lock file if it is the only trace, and the folders the lock made that nothing else filled."""
        if self._created:
            self.path.unlink(missing_ok=True)
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break


def file_lock(path: str | os.PathLike[str]) -> DirectoryLock:
    """The lock of one output file (``DIR/.name.lock``): two writers of that file exclude each other, not writers of its neighbours."""
    path = Path(path)
    return DirectoryLock(path.parent, name=f".{path.name}.lock")


def holds_lock(argument: str) -> Callable[[F], F]:
    """Make a function that writes into the folder passed as ``argument`` run holding that folder's :class:`DirectoryLock`."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with DirectoryLock(signature.bind(*args, **kwargs).arguments[argument]):
                return func(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate
