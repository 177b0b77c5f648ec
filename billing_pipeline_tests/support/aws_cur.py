"""The AWS CUR 2.0 fixture (data/providers/aws_cur/, SOURCES.md there) landed as AWS delivers it."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "data/providers/aws_cur/landing"
PERIOD = "cloud/aws_cur/cur2-gpu/data/BILLING_PERIOD=2026-10"
FIRST = f"{PERIOD}/2c9d4e1f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"  # the earlier delivery (one part)
SECOND = f"{PERIOD}/8f3c2a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f"  # the re-delivery (two parts) the manifest names


def land(tmp_path: Path, manifest: bool = True) -> Path:
    """The fixture as AWS delivers it: gzip CSV parts; the re-delivery written after the first."""
    landing = tmp_path / "landing"
    for src in sorted(FIXTURE.rglob("*")):
        if src.is_dir() or (src.name.endswith("Manifest.json") and not manifest):
            continue
        dst = landing / "cloud/aws_cur" / src.relative_to(FIXTURE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".csv":
            dst = dst.with_name(dst.name + ".gz")
            dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
        else:
            shutil.copy(src, dst)
    for i, part in enumerate(
        sorted((landing / FIRST).iterdir()) + sorted((landing / SECOND).iterdir())
    ):
        os.utime(part, (1_793_000_000 + i * 86_400,) * 2)  # the re-delivery arrives a day later
    return landing
