"""Invoice PDF rendering throughput: WeasyPrint in one process, headless Chromium printing the
same HTML, and the process pool the pipeline uses with 1 and with N workers.

    .venv/bin/python -m benchmarks.render [--invoices 500] [--workers N] [--skip-single]
        [--skip-chromium]

Documents are real pipeline output: the rating benchmark's synthetic catalog and usage (per-unit,
graduated, volume and hybrid plans; 1 to 20 lines, tiers, a 31-day usage chart) go through
rate_month and build_documents; every 50th customer additionally gets the lines of two others
(a customer on several plans, ~45 lines, 4-5 pages), with totals recomputed. Each measurement
runs in a fresh child process (its peak RSS is the renderer's, not the generator's) and writes
the PDFs into a temp dir (deleted afterwards):

- single: one ``InvoiceRenderer`` (built once, not timed), documents rendered one after another;
- chromium: the peer (issue 19): the same documents through the same ``render_html``, the
  stylesheet inlined and the shipped fonts as data: URLs (Chromium cannot fetch ``billing-font:``),
  printed by Debian's /usr/bin/chromium through Playwright the way Lago's Gotenberg does: one
  browser, one page reused, ``page.set_content`` + ``page.pdf`` (launch not timed). Its CPU time
  is the whole process tree's (driver, browser, renderer, GPU process), read from /proc;
- pool: ``rendering.render_pool.render_many`` with 1 worker (it then renders in its own process,
  as the pipeline does on one CPU) and with N workers (default: the CPUs), timed from pool start,
  so worker start-up and each worker's renderer construction are included.

Prints invoices/s, CPU ms per invoice (steadier than wall time on a busy machine; the pool's
includes its workers' start-up), WeasyPrint / Chromium and pool scaling ratios, peak RSS and the
average PDF size. Not a test: numbers depend on the machine (and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import yaml

from benchmarks.proc import tree_cpu_seconds
from benchmarks.rating import MONTH, catalog_document, usage_frame
from billing_pipeline.money import round_money

EVENTS_PER_CUSTOMER = 600
CHROMIUM = "/usr/bin/chromium"


def _merge(base: dict, others: list[dict]) -> dict:
    """``base`` with the lines (and chart data, plan rows) of ``others``; totals recomputed."""
    doc = {
        **base,
        "lines": [*base["lines"]],
        "usage_by_day": [*base["usage_by_day"]],
        "disclosure": {**base["disclosure"], "plan_table": [*base["disclosure"]["plan_table"]]},
    }
    for other in others:
        doc["lines"] += other["lines"]
        doc["usage_by_day"] += other["usage_by_day"]
        doc["disclosure"]["plan_table"] += other["disclosure"]["plan_table"]
    subtotal = sum((Decimal(line["amount"]) for line in doc["lines"]), Decimal(0))
    tax = round_money(subtotal * Decimal(doc["tax_rate"]), doc["currency"])
    doc.update(
        subtotal=str(subtotal),
        tax=str(tax),
        total=str(subtotal + tax - Decimal(doc["credits_applied"])),
        plan={**doc["plan"], "name": " / ".join(d["plan"]["name"] for d in [base, *others])},
    )
    return doc


def build_invoice_documents(invoices: int) -> list[dict]:
    from billing_pipeline.catalog import load_catalog
    from billing_pipeline.documents.invoice import build_documents
    from billing_pipeline.rating import rate_month

    tmp = Path(tempfile.mkdtemp(prefix="bench_render_docs_"))
    try:
        catalog_path = tmp / "catalog.yaml"
        catalog_path.write_text(
            yaml.safe_dump(catalog_document(invoices), sort_keys=False), encoding="utf-8"
        )
        catalog = load_catalog(catalog_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rated = rate_month(usage_frame(invoices * EVENTS_PER_CUSTOMER, invoices).lazy(), catalog, MONTH)
    docs = build_documents(rated.lines, catalog, MONTH)
    return [
        _merge(d, [docs[(i + 1) % len(docs)], docs[(i + 3) % len(docs)]]) if i % 50 == 49 else d
        for i, d in enumerate(docs)
    ]


def _peak_rss_mb(who: int) -> float:
    """Peak RSS. For this process from /proc (VmHWM starts at exec; ru_maxrss would include the
    launching process's memory at fork); for children ru_maxrss of the largest, an upper bound."""
    if who == resource.RUSAGE_SELF and Path("/proc/self/status").exists():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(who).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers, once joined)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@functools.cache
def _inlined_css(templates_dir: Path) -> str:
    """invoice.css with its ``billing-font:`` URLs as data: URLs of the same font files."""
    from billing_pipeline.rendering.pdf import FONT_SCHEME, FONTS_DIR, STYLESHEET_NAME

    return re.sub(
        rf"url\({FONT_SCHEME}:([^)]+)\)",
        lambda m: (
            "url(data:font/ttf;base64,"
            + base64.b64encode((FONTS_DIR / m.group(1)).read_bytes()).decode()
            + ")"
        ),
        (templates_dir / STYLESHEET_NAME).read_text(encoding="utf-8"),
    )


def chromium_html(renderer, doc: dict) -> str:
    """The invoice markup WeasyPrint gets, self-contained for Chromium (which cannot fetch
    ``billing-font:``): the stylesheet inlined in a <style>."""
    css = _inlined_css(renderer.templates_dir)
    return renderer.render_html(doc).replace("</head>", f"<style>{css}</style></head>", 1)


def _chromium(docs: list[dict], out: Path) -> tuple[float, float]:
    """Print every document with one headless Chromium and one page; (seconds, CPU seconds)."""
    from playwright.sync_api import sync_playwright

    from billing_pipeline.rendering.pdf import InvoiceRenderer

    renderer = InvoiceRenderer()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_content(chromium_html(renderer, docs[0]))  # warm-up, not timed or written
        page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
        c0, t0 = tree_cpu_seconds([os.getpid()]), time.perf_counter()
        for doc in docs:
            page.set_content(chromium_html(renderer, doc))
            page.pdf(
                path=out / f"{doc['customer_id']}.pdf",
                format="A4",
                print_background=True,
                prefer_css_page_size=True,
            )
        seconds, cpu = time.perf_counter() - t0, tree_cpu_seconds([os.getpid()]) - c0
        browser.close()
    return seconds, cpu


def measure(mode: str, docs_path: str, workers: int) -> None:
    """Child process: render every document once, print one result line."""
    from billing_pipeline.rendering.pdf import InvoiceRenderer
    from billing_pipeline.rendering.render_pool import render_many

    docs = pickle.loads(Path(docs_path).read_bytes())
    out = Path(tempfile.mkdtemp(prefix=f"bench_render_{mode}_"))
    try:
        if mode == "single":
            renderer = InvoiceRenderer()
            c0, t0 = _cpu_seconds(), time.perf_counter()
            render_many(docs, out, workers=1, renderer=renderer)
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        elif mode == "chromium":
            seconds, cpu = _chromium(docs, out)
        else:
            c0, t0 = _cpu_seconds(), time.perf_counter()
            render_many(docs, out, workers=workers)
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        sizes = [p.stat().st_size for p in out.glob("*.pdf")]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert len(sizes) == len(docs), f"{len(sizes)} PDFs for {len(docs)} documents"
    rss = _peak_rss_mb(resource.RUSAGE_SELF)
    worker_rss = _peak_rss_mb(resource.RUSAGE_CHILDREN) if mode == "pool" else 0.0
    print(
        f"{mode} {len(docs)} {seconds:.3f} {cpu:.3f} {sum(sizes) / len(sizes):.0f} {rss:.0f} {worker_rss:.0f}",
        flush=True,
    )


def _run(mode: str, docs_path: Path, workers: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.render",
            "--measure",
            mode,
            str(docs_path),
            "--workers",
            str(workers),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    _, n, seconds, cpu, size, rss, worker_rss = done.stdout.split()
    return {
        "n": int(n),
        "seconds": float(seconds),
        "cpu": float(cpu),
        "size": float(size),
        "rss": float(rss),
        "worker_rss": float(worker_rss),
    }


def main(argv: list[str] | None = None) -> None:
    from billing_pipeline.rendering.render_pool import default_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=500)
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: the CPUs)")
    parser.add_argument("--skip-single", action="store_true", help="measure only the pool")
    parser.add_argument(
        "--skip-chromium", action="store_true", help="no Chromium peer (or none installed)"
    )
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "DOCS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    if args.measure:
        measure(args.measure[0], args.measure[1], workers)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_render_"))
    try:
        t0 = time.perf_counter()
        docs = build_invoice_documents(args.invoices)
        docs_path = tmp / "documents.pickle"
        docs_path.write_bytes(pickle.dumps(docs))
        lines = Counter(len(d["lines"]) for d in docs)
        print(
            f"documents           {len(docs):,} in {time.perf_counter() - t0:.1f} s; lines per invoice: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(lines.items()))
        )
        results = {}
        if not args.skip_single:
            results["single"] = _run("single", docs_path, 1)
        if not args.skip_chromium and Path(CHROMIUM).exists():
            results["chromium"] = _run("chromium", docs_path, 1)
        if workers > 1:
            results["pool1"] = _run("pool", docs_path, 1)
        results["pool"] = _run("pool", docs_path, workers)
        labels = {
            "single": "weasyprint, 1 proc",
            "chromium": "chromium (peer)",
            "pool1": "pool, 1 worker",
            "pool": f"pool, {workers} workers",
        }
        for mode, r in results.items():
            rss = f"peak RSS {r['rss']:,.0f} MB" + (
                f" (parent), <= {r['worker_rss']:,.0f} MB (largest worker)"
                if mode == "pool"
                else ""
            )
            print(
                f"{labels[mode]:<19} {r['n'] / r['seconds']:6.2f} invoices/s  "
                f"{r['seconds'] / r['n'] * 1000:5.0f} ms wall, {r['cpu'] / r['n'] * 1000:4.0f} ms CPU "
                f"each ({r['seconds']:.1f} s; {rss}; avg PDF {r['size'] / 1024:.0f} KB)"
            )
        if "single" in results and "chromium" in results:
            w, c = results["single"], results["chromium"]
            print(
                f"weasyprint/chromium {w['cpu'] / c['cpu']:.2f}x CPU per invoice, "
                f"{w['seconds'] / c['seconds']:.2f}x wall (target <= 2x)"
            )
        if "pool1" in results:
            ratio = results["pool1"]["seconds"] / results["pool"]["seconds"]
            print(f"pool {workers} / 1 worker    {ratio:.2f}x invoices/s")
        if "single" in results:
            ratio = results["single"]["seconds"] / results["pool"]["seconds"]
            print(f"pool / one process  {ratio:.2f}x")
        per_s = results["pool"]["n"] / results["pool"]["seconds"]
        print(f"10,000 invoices     {10_000 / per_s / 60:.1f} min with the pool (at this rate)")
        busy = os.getloadavg()[0]
        print(
            f"load average        {busy:.1f} now on {default_workers()} CPUs (other work slows both modes; "
            f"CPU ms per invoice is the steadier number)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
