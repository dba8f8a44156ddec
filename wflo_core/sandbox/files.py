"""Moving files into and out of a sandbox's work dir without trusting what the code left there.

Input names are checked (relative, no ``..``); output is only regular files, collected without
following symlinks and capped in total size, so a hostile program cannot make the host read
``/etc/shadow`` through a link or fill the caller's memory.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from wflo_core.errors import ConfigError

FilesIn = Mapping[str, bytes | str]


def safe_relative_path(name: str) -> str:
    """``name`` as a normalized relative POSIX path, or ConfigError if it could escape the work dir."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\x00" in name or name.endswith("/"):
        raise ConfigError(
            f"sandbox file name {name!r} must be a relative path inside the work dir, e.g. 'data/input.csv'"
        )
    return str(path)


def normalize_files(files: FilesIn | None, *, max_total_bytes: int) -> dict[str, bytes]:
    """Validated names and byte contents (str is UTF-8 encoded), refusing more than the work dir holds."""
    out = {
        safe_relative_path(name): data.encode() if isinstance(data, str) else bytes(data)
        for name, data in (files or {}).items()
    }
    total = sum(len(data) for data in out.values())
    if total > max_total_bytes:
        raise ConfigError(
            f"sandbox input files total {total} bytes, more than the work dir limit of "
            f"{max_total_bytes} bytes; raise SandboxLimits.workdir_bytes or pass less data"
        )
    return out


def write_files(root: Path, files: Mapping[str, bytes], *, uid: int | None = None) -> None:
    """Write ``files`` under ``root`` (created dirs and files owned by ``uid`` when given)."""
    for name, data in files.items():
        target = root / name
        for parent in reversed(target.relative_to(root).parents[:-1]):
            (root / parent).mkdir(exist_ok=True)
            if uid is not None:
                os.chown(root / parent, uid, uid)
        target.write_bytes(data)
        if uid is not None:
            os.chown(target, uid, uid)


def read_files(root: Path, *, max_total_bytes: int) -> tuple[dict[str, bytes], bool]:
    """Regular files under ``root`` (symlinks and devices skipped), and whether any were left out."""
    found: dict[str, bytes] = {}
    total, truncated = 0, False
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as fh:
                info = os.fstat(fh.fileno())
                if not stat.S_ISREG(info.st_mode):
                    continue
                if total + info.st_size > max_total_bytes:
                    truncated = True
                    continue
                data = fh.read(max_total_bytes - total + 1)
            if total + len(data) > max_total_bytes:
                truncated = True
                continue
            total += len(data)
            found[os.path.relpath(path, root)] = data
    return found, truncated


def tar_files(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar of ``files`` (used to stream inputs into a container)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar_files(data: bytes, *, max_total_bytes: int) -> tuple[dict[str, bytes], bool]:
    """Regular files from an untrusted tar: names checked, size capped, a cut-off archive read partly."""
    found: dict[str, bytes] = {}
    total, truncated = 0, False
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                if not member.isreg():
                    continue
                try:
                    name = safe_relative_path(member.name.removeprefix("./"))
                except ConfigError:
                    continue
                if total + member.size > max_total_bytes:
                    truncated = True
                    continue
                extracted = archive.extractfile(member)
                content = extracted.read() if extracted else b""
                total += len(content)
                found[name] = content
    except (tarfile.TarError, EOFError, OSError):
        truncated = True
    return found, truncated
