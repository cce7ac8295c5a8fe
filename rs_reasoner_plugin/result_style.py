"""How a result looks in the project: its layer name ("query — model — time") and a colour
per class that means something (trees green, water blue, buildings red, roads grey), the
qualitative palette only for classes no rule knows. Pure Python (no Qt)."""

from __future__ import annotations

import datetime as _dt
import re

#: Separator of the parts of a result layer's name.
NAME_SEPARATOR = " — "

#: (words a class name may contain, fill colour); the first rule that matches wins.
MEANING_COLOURS: list[tuple[tuple[str, ...], str]] = [
    (("water", "river", "lake", "sea", "pond", "stream", "canal", "reservoir", "ocean",
      "wetland", "flood"), "#1f78b4"),
    (("tree", "forest", "wood", "canopy", "orchard", "shrub"), "#1a9641"),
    (("grass", "meadow", "lawn", "pasture", "vegetation", "park", "crop", "field", "farm",
      "agricultur"), "#a6d96a"),
    (("building", "house", "roof", "residential", "industrial", "urban", "settlement"),
     "#d7301f"),
    (("road", "street", "highway", "parking", "pavement", "runway", "railway", "track",
      "path"), "#737373"),
    (("bare", "soil", "sand", "desert", "rock", "gravel", "quarry", "beach"), "#d8b365"),
    (("snow", "ice", "glacier"), "#e0f3f8"),
    (("cloud",), "#f0f0f0"),
    (("shadow",), "#252525"),
    (("car", "vehicle", "truck", "bus"), "#ff7f00"),
    (("ship", "boat", "vessel"), "#6a3d9a"),
    (("solar", "panel"), "#08306b"),
]
#: Colours for classes no rule knows (none of them is a meaning colour above).
PALETTE = ["#e7298a", "#7570b3", "#66a61e", "#e6ab02", "#a6761d", "#1b9e77", "#d95f02",
           "#f781bf", "#984ea3", "#b15928"]


def meaning_colour(label: str) -> str | None:
    """The colour a class name calls for, or None when no rule knows it."""
    words = re.findall(r"[a-z]+", label.lower())
    for keys, colour in MEANING_COLOURS:
        if any(w.startswith(k) for w in words for k in keys):
            return colour
    return None


def class_colours(labels: list[str]) -> dict[str, str]:
    """A fill colour for each label: its meaning's, else the next palette colour."""
    out: dict[str, str] = {}
    spare = 0
    for label in labels:
        colour = meaning_colour(label)
        if colour is None:
            colour = PALETTE[spare % len(PALETTE)]
            spare += 1
        out[label] = colour
    return out


def result_layer_name(query: str, model: str = "", when: _dt.datetime | None = None,
                      max_query: int = 48) -> str:
    """``"trees — index-baseline — 14:32:05"``: what was asked, by which model, when."""
    q = " ".join(query.split())
    if len(q) > max_query:
        q = q[: max_query - 1].rstrip() + "…"
    stamp = (when or _dt.datetime.now()).strftime("%H:%M:%S")
    return NAME_SEPARATOR.join(p for p in (q, model.strip(), stamp) if p)


def round_area(value: float, geographic: bool) -> float:
    """An area as people read it: 2 decimals in projected units (m², ft²); 9 significant
    digits in degrees², whose values are tiny."""
    return float(f"{value:.9g}") if geographic else round(value, 2)
