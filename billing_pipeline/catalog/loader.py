"""Load and validate the catalog YAML; errors name the file and the path inside the document."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path

import yaml
from pydantic import ValidationError

from billing_pipeline.catalog.model import Catalog

# libyaml's parser when PyYAML was built with it (its wheels are): the same documents and the
# same resolver as the pure-Python SafeLoader, several times faster, and every asset that prices
# anything loads the catalog.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
    """A catalog that cannot be billed from. ``str()`` is one line per problem."""


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's internal validator names, not document paths
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


# a validator may name the field inside the object it checks: "tiers[1].up_to: ..."
_INNER_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): ")


def _line(source: str, err: dict) -> str:
    """'catalog.yaml: plans.enterprise.charges[1].tiers[0].up_to: what is wrong'. A validator
    that found several problems reports them one per line: each becomes its own line here."""
    msg = _message(err)
    if "\n" in msg:
        return "\n".join(_line(source, {**err, "msg": part}) for part in msg.split("\n"))
    if not err["loc"]:
        return f"{source}: {msg}"
    path = _path(err["loc"])
    inner = _INNER_PATH.match(msg)
    if inner:
        path, msg = f"{path}.{inner.group(1)}", msg[inner.end() :]
    return f"{source}: {path}: {msg}"


def parse_catalog(document: dict, source: str = "<catalog>") -> Catalog:
    try:
        return Catalog.model_validate(document)
    except ValidationError as exc:
        raise CatalogError("\n".join(_line(source, e) for e in exc.errors())) from None


# Catalogs parsed in this process, by file, with the sha256 of the bytes they were parsed from.
# In one process every priced step loads the catalog again (a month-end run in process: each
# step; a Celery worker: every task), and 10,000 customers are ~2 s of YAML each time; the
# models are frozen, so one parse serves every step while the file's bytes stay the same.
_PARSED: OrderedDict[str, tuple[str, Catalog]] = OrderedDict()
_PARSED_MAX = 8  # files kept (a test session loads hundreds of small ones)
_PARSED_LOCK = threading.Lock()


def load_catalog(path: str | Path) -> Catalog:
    """The catalog in ``path``, validated; parsed again only when the file's bytes change."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    data = path.read_bytes()
    key, digest = str(path.resolve()), hashlib.sha256(data).hexdigest()
    with _PARSED_LOCK:
        known = _PARSED.get(key)
        if known is not None and known[0] == digest:
            _PARSED.move_to_end(key)
            return known[1]
    catalog = _parse_file(path, data)
    with _PARSED_LOCK:
        _PARSED[key] = (digest, catalog)
        _PARSED.move_to_end(key)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return catalog


def _parse_file(path: Path, data: bytes) -> Catalog:
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
        document = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping with issuer, plans, customers")
    return parse_catalog(document, str(path))
