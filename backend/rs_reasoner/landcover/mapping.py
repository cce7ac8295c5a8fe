"""From a product's legend to the user's classes.

A mapping file is a CSV of ``product class,user class`` rows (a header row is optional).
The product class is a raster code or a legend name (case ignored); several product
classes may map to one user class; product classes not listed are ignored (no weak
label there), as are rows whose user class is empty or ``-``. Without a file, product
classes whose name is one of the user's classes map to it.

Every mistake of a file is reported at once, in one error: product classes the legend
does not have, and user classes that are not among the classes of the parcels.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rs_reasoner.landcover import NO_LABEL, LandCoverError
from rs_reasoner.landcover.products import NO_CODE, ProductLegend

_PRODUCT_HEADERS = {
    "product",
    "product class",
    "product_class",
    "code",
    "value",
    "source",
    "from",
    "legend",
    "land cover",
    "landcover",
}
_USER_HEADERS = {"user", "user class", "user_class", "class", "target", "to", "my class"}
_SKIP = {"", "-", "ignore", "none"}


def read_mapping_rows(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(product class, user class) rows of a mapping CSV, header dropped.

    Raises:
        LandCoverError: Missing or unreadable file, a row without two columns.
    """
    path = Path(path)
    if not path.is_file():
        raise LandCoverError(
            f"The class mapping file {path} does not exist.",
            "Give a CSV of 'product class,your class' rows.",
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
            rows = [r for r in csv.reader(fh, dialect) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LandCoverError(
            f"Cannot read the class mapping file {path}: {exc}",
            "Save it as a UTF-8 CSV of 'product class,your class' rows.",
        ) from None
    if (
        rows
        and rows[0][0].strip().lower() in _PRODUCT_HEADERS
        and (len(rows[0]) > 1 and rows[0][1].strip().lower() in _USER_HEADERS)
    ):
        rows = rows[1:]
    short = [i + 1 for i, r in enumerate(rows) if len(r) < 2]
    if short:
        raise LandCoverError(
            f"The class mapping file {path.name} has rows without two columns (row "
            f"{', '.join(map(str, short[:5]))}).",
            "Write each row as 'product class,your class'.",
        )
    if not rows:
        raise LandCoverError(
            f"The class mapping file {path.name} is empty.",
            "Write one 'product class,your class' row per class.",
        )
    return [(r[0].strip(), r[1].strip()) for r in rows]


def build_mapping(
    legend: ProductLegend,
    user_classes: Sequence[str],
    product: str,
    rows: list[tuple[str, str]] | None = None,
    source: str = "the mapping file",
) -> dict[int, int]:
    """Product code -> user class id.

    Args:
        legend: The product's legend.
        user_classes: The user's classes (id = position).
        product: The product's name (messages).
        rows: (product class, user class) rows, or None to map equal names.
        source: Where the rows came from (messages).

    Returns:
        The table (only mapped codes).

    Raises:
        LandCoverError: Unknown product or user classes (all in one message), or
            nothing mapped.
    """
    users = {name.strip().lower(): i for i, name in enumerate(user_classes)}
    by_name: dict[str, list[int]] = {}
    for code, name in legend.classes.items():
        by_name.setdefault(name.strip().lower(), []).append(code)
    if rows is None:
        table = {
            code: users[name] for name, codes in by_name.items() if name in users for code in codes
        }
        if not table:
            raise LandCoverError(
                f"No class of {product} ({_listing(legend.classes.values())}, legend: "
                f"{legend.origin}) has the name of one of your classes "
                f"({', '.join(user_classes)}).",
                f"Give a mapping file: {product}...:mapping.csv with rows "
                "'product class,your class'.",
            )
        return table
    table: dict[int, int] = {}
    bad_product, bad_user = [], []
    for product_class, user_class in rows:
        if user_class.lower() in _SKIP:
            continue
        codes = _codes(product_class, legend, by_name)
        if codes is None:
            bad_product.append(product_class)
        if user_class.lower() not in users:
            bad_user.append(f"{product_class} -> {user_class}")
        if codes is not None and user_class.lower() in users:
            table.update(dict.fromkeys(codes, users[user_class.lower()]))
    problems = []
    if bad_user:
        problems.append(
            f"maps to class(es) that are not yours: {'; '.join(bad_user)} (your classes: "
            f"{', '.join(user_classes)})"
        )
    if bad_product:
        problems.append(
            f"names product class(es) {', '.join(map(repr, bad_product))} that {product} does "
            f"not have (its classes: {_listing(legend.classes.values())}; legend: "
            f"{legend.origin})"
        )
    if problems:
        raise LandCoverError(
            f"The class mapping of {product} ({source}) " + " and ".join(problems) + ".",
            "Fix those rows: the first column a code or class of the product, the second "
            "one of your classes exactly as in the class field (or '-' to ignore).",
        )
    if not table:
        raise LandCoverError(
            f"The class mapping of {product} ({source}) maps no class.",
            "Add 'product class,your class' rows.",
        )
    return table


def _codes(text: str, legend: ProductLegend, by_name: dict[str, list[int]]) -> list[int] | None:
    """Codes of a product class given by name (case ignored) or by code."""
    if text.strip().lower() in by_name:
        return by_name[text.strip().lower()]
    try:
        code = int(float(text))
    except ValueError:
        return None
    if code in legend.classes or not legend.named:
        return [code]
    return None


def _listing(names: object) -> str:
    unique = list(dict.fromkeys(str(n) for n in names))  # type: ignore[attr-defined]
    return ", ".join(unique[:12]) + (", ..." if len(unique) > 12 else "")


def apply_mapping(codes: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """(H, W) uint8 user class ids of product codes, :data:`NO_LABEL` where unmapped."""
    out = np.full(codes.shape, NO_LABEL, np.uint8)
    for code, class_id in table.items():
        out[codes == code] = class_id
    out[codes == NO_CODE] = NO_LABEL
    return out
