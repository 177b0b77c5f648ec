"""GPU VM sizes of AWS, Azure, GCP and OCI: how many GPUs of which type one instance-hour carries.

One table for every cloud reader (CUR 2.0 and FOCUS), so a size is priced the same whichever export
it arrives in. gpu_seconds = instance hours x 3600 x ``gpus``. A size that LOOKS like a GPU size
(``is_gpu_looking``) but is not in the table is money at risk (``unknown_gpu_sku``): a new family
(p6, a new ND/NC size, a4x) must be added here with its source before it can bill, never guessed.
Fractional-GPU sizes (Azure NVadsA10 v5, NC A10 v4 partitions) are deliberately absent: they are
not whole GPU time, so they stay unknown until a plan says how to price them.

Sources, per family (public specification pages, late 2026):

- AWS: https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html (accelerated computing:
  P4d/P4de A100, P5 H100, P5e/P5en H200, G5 A10G, G6 L4, G6e L40S) and
  https://aws.amazon.com/ec2/instance-types/g5/ , /g6/ , /g6e/ , /p5/ (GPUs per size).
- Azure: https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndh100v5-series ,
  .../nd-h200-v5-series , .../ndasra100v4-series , .../ndma100v4-series , .../nca100v4-series ,
  .../ncadsh100v5-series , .../ncast4v3-series , .../ncv3-series , .../ndmi300xv5-series.
- GCP: https://cloud.google.com/compute/docs/accelerator-optimized-machines (A2, A3, A4, G2
  machine types and their attached GPUs) and https://cloud.google.com/compute/docs/gpus .
- OCI: https://docs.oracle.com/iaas/Content/Compute/References/computeshapes.htm#bm-gpu (bare
  metal and VM GPU shapes).
"""

from __future__ import annotations

import polars as pl

# ---------------------------------------------------------------- AWS (lower-case instance type)
_SIZES_1 = ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
AWS: dict[str, tuple[str, int]] = {
    "p4d.24xlarge": ("A100", 8),
    "p4de.24xlarge": ("A100-80GB", 8),
    "p5.48xlarge": ("H100", 8),
    "p5.4xlarge": ("H100", 1),
    "p5e.48xlarge": ("H200", 8),
    "p5en.48xlarge": ("H200", 8),
}
for _family, _gpu in (("g5", "A10G"), ("g6", "L4"), ("g6e", "L40S")):
    AWS |= {f"{_family}.{s}": (_gpu, 1) for s in _SIZES_1}
    AWS |= {
        f"{_family}.12xlarge": (_gpu, 4),
        f"{_family}.24xlarge": (_gpu, 4),
        f"{_family}.48xlarge": (_gpu, 8),
    }

# ---------------------------------------------------------------- Azure (ARM SKU name, lower-cased)
AZURE: dict[str, tuple[str, int]] = {
    "standard_nd96isr_h100_v5": ("H100", 8),  # ND H100 v5
    "standard_nd96isr_h200_v5": ("H200", 8),  # ND H200 v5
    "standard_nd96asr_v4": ("A100", 8),  # ND A100 v4 (40 GB)
    "standard_nd96asr_a100_v4": ("A100", 8),  # the same size as its meter name writes it
    "standard_nd96amsr_a100_v4": ("A100-80GB", 8),  # NDm A100 v4
    "standard_nc24ads_a100_v4": ("A100-80GB", 1),  # NC A100 v4 (80 GB PCIe)
    "standard_nc48ads_a100_v4": ("A100-80GB", 2),
    "standard_nc96ads_a100_v4": ("A100-80GB", 4),
    "standard_nc40ads_h100_v5": ("H100-NVL", 1),  # NCads H100 v5 (H100 NVL 94 GB)
    "standard_nc80adis_h100_v5": ("H100-NVL", 2),
    "standard_nc4as_t4_v3": ("T4", 1),  # NCasT4_v3
    "standard_nc8as_t4_v3": ("T4", 1),
    "standard_nc16as_t4_v3": ("T4", 1),
    "standard_nc64as_t4_v3": ("T4", 4),
    "standard_nc6s_v3": ("V100", 1),  # NCv3
    "standard_nc12s_v3": ("V100", 2),
    "standard_nc24s_v3": ("V100", 4),
    "standard_nc24rs_v3": ("V100", 4),
    "standard_nd96isr_mi300x_v5": ("MI300X", 8),  # ND MI300X v5
}

# ---------------------------------------------------------------- GCP (machine type)
GCP: dict[str, tuple[str, int]] = {
    **{f"a3-highgpu-{n}g": ("H100", n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": ("H100", 8),
    "a3-edgegpu-8g": ("H100", 8),
    "a3-ultragpu-8g": ("H200", 8),
    "a4-highgpu-8g": ("B200", 8),
    **{f"a2-highgpu-{n}g": ("A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("A100", 16),
    **{f"a2-ultragpu-{n}g": ("A100-80GB", n) for n in (1, 2, 4, 8)},
    **{f"g2-standard-{c}": ("L4", 1) for c in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("L4", 2),
    "g2-standard-48": ("L4", 4),
    "g2-standard-96": ("L4", 8),
}

# ---------------------------------------------------------------- OCI (shape, lower-cased)
OCI: dict[str, tuple[str, int]] = {
    "bm.gpu.h100.8": ("H100", 8),
    "bm.gpu.h200.8": ("H200", 8),
    "bm.gpu.a100-v2.8": ("A100-80GB", 8),
    "bm.gpu4.8": ("A100", 8),
    "bm.gpu.l40s.4": ("L40S", 4),
    "bm.gpu.a10.4": ("A10", 4),
    "vm.gpu.a10.1": ("A10", 1),
    "vm.gpu.a10.2": ("A10", 2),
}

GPU_SIZES: dict[str, tuple[str, int]] = {**AWS, **AZURE, **GCP, **OCI}
GPU_INSTANCES = AWS  # the AWS-only view the readers used before the table moved here

# A size in any cloud's notation, found in free text (SKU details, descriptions, resource ids).
# Order: Azure ARM names, OCI shapes, GCP machine types, AWS instance types (with SageMaker ml.).
SIZE_PATTERNS = (
    r"(?i)\b(standard_[a-z]+\d+[a-z0-9_]*)",
    r"(?i)\b((?:bm|vm)\.[a-z0-9]+(?:\.[a-z0-9-]+)+)",
    r"\b([a-z]\d[a-z]?-(?:standard|highgpu|megagpu|ultragpu|edgegpu|highmem|highcpu|custom|micro|small|medium)(?:-\d+g?)?)\b",
    r"(?i)\b(?:ml\.)?([a-z][a-z0-9-]*\d[a-z0-9-]*\.(?:\d*x?large|metal(?:-\d+xl)?|medium|small|micro|nano))\b",
)
# GPU-looking sizes: AWS p*/g*/gr*, Azure N-series, GCP accelerator-optimized a*/g* families,
# OCI shapes with GPU in the name.
GPU_LOOKING = r"^(?:p\d|g\d|gr\d|standard_n|a\d[a-z]?-|g\d-|(?:bm|vm)\.gpu)"


def size_expr(texts: list[pl.Expr]) -> pl.Expr:
    """First VM size found in the given text columns (lower-case), null when none names one."""
    found = []
    for text in texts:
        for pattern in SIZE_PATTERNS:
            found.append(text.str.extract(pattern, 1).str.to_lowercase())
    return pl.coalesce(found) if found else pl.lit(None, pl.String)


def azure_meter_size(meter: pl.Expr) -> pl.Expr:
    """Azure's meter name ``ND96isr H100 v5`` is the ARM size without ``Standard_`` and with spaces:
    the FOCUS SkuMeter/x_SkuMeterName of a VM row names the size even when x_SkuDetails is empty."""
    clean = meter.str.strip_chars().str.replace(r"(?i)\s+(spot|low priority)$", "")
    return pl.when(clean.str.contains(r"^[A-Za-z]{1,3}\d+[A-Za-z]*( [A-Za-z0-9]+)* v\d+$")).then(
        pl.lit("standard_") + clean.str.replace_all(" ", "_").str.to_lowercase()
    )


def azure_description_size(text: pl.Expr) -> pl.Expr:
    """Azure's FOCUS ChargeDescription is ``<meter subcategory> - <meter name> - <region>``
    (real sample: ``Virtual Machines Dv2/DSv2 Series - D11 v2/DS11 v2 - US East 2``): the meter name
    (first of ``a/b``) names the size."""
    return azure_meter_size(
        text.str.extract(r"^Virtual Machines[^-]* - ([^/-]+?)(?:/[^-]*)? - ", 1)
    )


def table_frame() -> pl.DataFrame:
    """The table as a frame to join on ``instance_type``."""
    return pl.DataFrame(
        {
            "instance_type": list(GPU_SIZES),
            "gpu_type": [v[0] for v in GPU_SIZES.values()],
            "gpus": [v[1] for v in GPU_SIZES.values()],
        },
        schema={"instance_type": pl.String, "gpu_type": pl.String, "gpus": pl.Int64},
    )


def is_gpu_looking(size: pl.Expr) -> pl.Expr:
    return size.str.contains(GPU_LOOKING).fill_null(False)


# GCP bills a GPU VM as separate SKUs (cores, RAM, and one "Nvidia <model> GPU" SKU whose usage is
# GPU-hours). The GPU SKU's description names the GPU model; map it to our gpu_type names.
GCP_GPU_DESCRIPTIONS = (
    (r"(?i)\bH100\b.*\bmega\b|\bmega\b.*\bH100\b", "H100"),
    (r"(?i)\bH200\b", "H200"),
    (r"(?i)\bH100\b", "H100"),
    (r"(?i)\bB200\b", "B200"),
    (r"(?i)\bA100\b.*80\s?GB", "A100-80GB"),
    (r"(?i)\bA100\b", "A100"),
    (r"(?i)\bL4\b", "L4"),
)


def gpu_model_from_text(text: pl.Expr) -> pl.Expr:
    """GPU model named in a description (``Nvidia H100 80GB GPU running in Americas``), else null."""
    out = pl.lit(None, pl.String)
    for pattern, name in reversed(GCP_GPU_DESCRIPTIONS):
        out = pl.when(text.str.contains(pattern).fill_null(False)).then(pl.lit(name)).otherwise(out)
    return out
