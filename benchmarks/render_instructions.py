"""Invoice layout variants compared by instruction count, for machines whose timings drift.

    .venv/bin/python -m benchmarks.render_instructions [--invoices 4] [VARIANT_TEMPLATES_DIR ...]

A template change that saves a few percent of WeasyPrint's time is lost in the noise of a shared
2-core machine (+-10 % between rounds of the same code). Instructions counted by
``valgrind --tool=callgrind`` are the same for the same run whatever else the machine does, so
each templates folder (the shipped ``templates/`` first, then each variant given) renders the
same first ``--invoices`` benchmark documents (``benchmarks.render``: 18, 7, 1 and 20 lines for
the first four) in a child process under callgrind with PYTHONHASHSEED=0; a run that renders none
(imports, renderer construction) is subtracted, and the rest divided by the invoices. Prints
millions of instructions per invoice and the change against the shipped templates. Instructions
are not seconds (a cache miss costs more than an add), but for the same Python code on different
markup they move together; benchmarks/RESULTS.md (machine G) has a table made with it.

Slow by design: ~10 s of callgrind per invoice and ~30 s per run for the imports, two runs at a
time. Needs valgrind (Debian's package); exits 2 without it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "templates"
COLLECTED = re.compile(r"Collected : (\d+)")


def _count(templates: Path, docs: Path, invoices: int) -> int:
    """Instructions of one child rendering the first ``invoices`` documents with ``templates``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.render_instructions",
            "--render",
            str(templates),
            str(docs),
            str(invoices),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = COLLECTED.search(done.stderr)
    if done.returncode or found is None:
        raise SystemExit(f"callgrind run for {templates} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def render(templates: str, docs: str, invoices: int) -> None:
    """Child: render the documents (no files written), nothing else."""
    from billing_pipeline.rendering.pdf import InvoiceRenderer

    renderer = InvoiceRenderer(Path(templates))
    for doc in pickle.loads(Path(docs).read_bytes())[:invoices]:
        renderer.render_pdf(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", type=Path, help="templates folders to compare")
    parser.add_argument("--invoices", type=int, default=4)
    parser.add_argument("--render", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.render:
        render(args.render[0], args.render[1], int(args.render[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    for folder in args.variants:
        if not (folder / "invoice.html.j2").is_file():
            raise SystemExit(f"{folder}: no invoice.html.j2 (a templates folder is expected)")
    from benchmarks.render import build_invoice_documents

    tmp = Path(tempfile.mkdtemp(prefix="bench_render_instructions_"))
    try:
        docs = tmp / "documents.pickle"
        docs.write_bytes(pickle.dumps(build_invoice_documents(max(args.invoices, 100))))
        folders = [SHIPPED, *args.variants]
        jobs = [(SHIPPED, 0)] + [(f, args.invoices) for f in folders]
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = list(pool.map(lambda job: _count(job[0], docs, job[1]), jobs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base, per = counts[0], [(c - counts[0]) / args.invoices / 1e6 for c in counts[1:]]
    print(f"imports and renderer, no invoice: {base / 1e6:,.1f} M instructions")
    width = max(len(str(f)) for f in folders)
    for folder, m in zip(folders, per, strict=True):
        change = "" if folder == SHIPPED else f"  {100 * (m - per[0]) / per[0]:+.1f} %"
        print(f"{str(folder).ljust(width)}  {m:9,.1f} M instructions an invoice{change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
