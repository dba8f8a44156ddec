"""Moving files in and out of a work dir without trusting its contents."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from wflo_core.errors import ConfigError
from wflo_core.sandbox.files import normalize_files, read_files, tar_files, untar_files, write_files
from wflo_core.sandbox.output import CappedBuffer


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "dir/", "a\x00b"])
def test_input_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="relative path inside the work dir"):
        normalize_files({name: "x"}, max_total_bytes=100)


def test_inputs_are_bytes_and_bounded_by_the_work_dir() -> None:
    assert normalize_files({"./a/b.txt": "é"}, max_total_bytes=10) == {"a/b.txt": "é".encode()}
    with pytest.raises(ConfigError, match="11 bytes, more than the work dir limit of 10"):
        normalize_files({"a": b"x" * 6, "b": b"y" * 5}, max_total_bytes=10)


def test_read_files_skips_links_and_caps_the_total(tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("TOP SECRET")
    work = tmp_path / "work"
    work.mkdir()
    write_files(work, {"a.txt": b"12345", "sub/b.txt": b"678", "z.txt": b"x" * 10})
    (work / "link.txt").symlink_to(secret)
    (work / "linkdir").symlink_to(tmp_path)
    os.mkfifo(work / "fifo")
    found, truncated = read_files(work, max_total_bytes=8)
    assert found == {"a.txt": b"12345", "sub/b.txt": b"678"} and truncated
    assert read_files(work, max_total_bytes=100) == (
        {"a.txt": b"12345", "sub/b.txt": b"678", "z.txt": b"x" * 10},
        False,
    )


def test_tar_round_trip() -> None:
    files = {"a.txt": b"1", "deep/dir/b.bin": bytes(range(256))}
    assert untar_files(tar_files(files), max_total_bytes=1000) == (files, False)


def test_untar_ignores_hostile_members_and_survives_a_cut_archive() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, kind in (
            ("../escape", tarfile.REGTYPE),
            ("/abs", tarfile.REGTYPE),
            ("ok.txt", tarfile.REGTYPE),
            ("ln", tarfile.SYMTYPE),
            ("big.bin", tarfile.REGTYPE),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            data = b"x" * (5000 if name == "big.bin" else 2)
            if kind == tarfile.SYMTYPE:
                info.linkname, data = "/etc/shadow", b""
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    found, truncated = untar_files(buf.getvalue(), max_total_bytes=100)
    assert found == {"ok.txt": b"xx"} and truncated
    partial, cut = untar_files(buf.getvalue()[:3000], max_total_bytes=10_000)
    assert cut and "big.bin" not in partial


def test_capped_buffer_keeps_the_head_and_flags_the_rest() -> None:
    buffer = CappedBuffer(5)
    assert buffer.write(b"abc") is False
    assert buffer.write(b"defg") is True
    assert buffer.getvalue() == b"abcde" and buffer.truncated
    assert buffer.write(b"more") is True and buffer.getvalue() == b"abcde"
