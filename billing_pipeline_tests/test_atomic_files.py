"""A batch of files is written the way each file is (atomic.py): its content replaces it only
once it is on disk, and a batch that cannot write every file replaces none of them."""

from __future__ import annotations

import errno
import os

import pytest

from billing_pipeline.atomic import write_many


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_a_batch_replaces_every_file_with_its_bytes_in_the_usual_mode(tmp_path):
    (tmp_path / "invoices").mkdir()
    (tmp_path / "invoices" / "acme.json").write_text("last month's draft")
    files = {
        tmp_path / "invoices" / "acme.json": b'{"total": "12.00"}\n',
        tmp_path / "invoices" / "globex.json": b'{"total": "3.00"}\n',
        tmp_path / "receipts" / "globex.json": b"{}",  # a folder that does not exist yet
    }

    write_many(files)

    for path, data in files.items():
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in (tmp_path / "invoices").iterdir()) == ["acme.json", "globex.json"]


def test_a_batch_that_cannot_flush_one_file_replaces_none_and_names_it(tmp_path, monkeypatch):
    """Say the disk reports an error writing globex's copy back: acme's old file stays too (no
    half-new month), the error names globex's file, and no temporary file is left."""
    (tmp_path / "acme.json").write_text("old acme")
    (tmp_path / "globex.json").write_text("old globex")
    fsync = os.fsync

    def failing_fsync(fd):
        if ".globex.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)

    with pytest.raises(OSError, match=r"cannot write .*globex\.json: Input/output error"):
        write_many({tmp_path / "acme.json": b"new acme", tmp_path / "globex.json": b"new globex"})

    assert (tmp_path / "acme.json").read_text() == "old acme"
    assert (tmp_path / "globex.json").read_text() == "old globex"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme.json", "globex.json"]
