"""Files written so that a crash never leaves half of one: the writer every dashrl command uses.

- `atomic_write_text(path, text)` / `atomic_write_bytes(path, data)`: a temporary file in the
  same folder, fsynced, renamed over `path`, then the folder fsynced; a crash at any point
  leaves the old file whole. `save_figure(fig, path)` writes a matplotlib figure that way
  (`dashrl report`, `dashrl bench`, the study's figures).
- `writable_problem(folder)`: why files cannot be created in `folder`, found by a real probe
  before any heavy work starts (`dashrl train`'s run folder, `dashrl eval --out`, `distill`).
- `share(path)` / `fsync_dir(path)`: the pieces checkpoints (`dashrl.train.checkpoint`) use
  for whole folders.

Files get the modes a plain `open` would give them under the process umask (0644 under the
usual 022): run files are for everyone to read. Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask, read without changing it where Linux shows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass
    mask = os.umask(0o022)  # pragma: no cover
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def share(path: Path) -> None:
    """Give `path` and everything under it the modes a plain `open`/`mkdir` would: tempfile
    and some writers (safetensors) make private 0600/0700 files."""
    mask = umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file, fsync and rename (parents are made).

    >>> p = Path(tempfile.mkdtemp()) / "note.txt"; atomic_write_text(p, "hello\\n"); p.read_text()
    'hello\\n'
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """Render a matplotlib figure in memory, then write it with `atomic_write_bytes`: a crash or
    a full disk while plotting leaves the previous picture whole (the format is the suffix's)."""
    buffer = BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, fsync and rename.

    >>> p = Path(tempfile.mkdtemp()) / "a.bin"; atomic_write_bytes(p, b"\\x00\\x01"); p.read_bytes()
    b'\\x00\\x01'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600 files; run files are for everyone to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def writable_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in `folder` (made with its parents), or None if they can.

    It creates and removes a probe file in the nearest folder that exists (permission bits
    alone are not enough: root passes `os.access` on /proc), and creates nothing else.

    >>> writable_problem("/proc/nope") is not None, writable_problem(tempfile.gettempdir())
    (True, None)
    """
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".dashrl-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return f"{probe} is not writable ({e.strerror or e})"
    return None
