"""Built-in legends of common land-cover products, so the usual case needs no legend file.

Each legend lists the product's raster codes with the class name its producer publishes
and the colour of its official palette (used to recognise a product by its colour table).
CORINE is given at level 1: both the five level-1 codes and the three-digit CLC codes
(111 ... 523, whose first digit is the level-1 class) are understood.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Legend:
    """A product legend.

    Attributes:
        name: Short name (what ``path:NAME`` selects).
        title: The product's name for messages.
        classes: Raster code -> class name (several codes may share a name).
        colours: Raster code -> ``#rrggbb`` of the official palette (may be empty).
    """

    name: str
    title: str
    classes: dict[int, str]
    colours: dict[int, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Distinct class names in code order."""
        return list(dict.fromkeys(self.classes[c] for c in sorted(self.classes)))


WORLDCOVER = Legend(
    "worldcover",
    "ESA WorldCover",
    {
        10: "Tree cover",
        20: "Shrubland",
        30: "Grassland",
        40: "Cropland",
        50: "Built-up",
        60: "Bare / sparse vegetation",
        70: "Snow and ice",
        80: "Permanent water bodies",
        90: "Herbaceous wetland",
        95: "Mangroves",
        100: "Moss and lichen",
    },
    {
        10: "#006400",
        20: "#ffbb22",
        30: "#ffff4c",
        40: "#f096ff",
        50: "#fa0000",
        60: "#b4b4b4",
        70: "#f0f0f0",
        80: "#0064c8",
        90: "#0096a0",
        95: "#00cf75",
        100: "#fae6a0",
    },
)

DYNAMIC_WORLD = Legend(
    "dynamic-world",
    "Dynamic World",
    {
        0: "Water",
        1: "Trees",
        2: "Grass",
        3: "Flooded vegetation",
        4: "Crops",
        5: "Shrub and scrub",
        6: "Built",
        7: "Bare",
        8: "Snow and ice",
    },
    {
        0: "#419bdf",
        1: "#397d49",
        2: "#88b053",
        3: "#7a87c6",
        4: "#e49635",
        5: "#dfc35a",
        6: "#c4281b",
        7: "#a59b8f",
        8: "#b39fe1",
    },
)

_CORINE_LEVEL1 = {
    1: "Artificial surfaces",
    2: "Agricultural areas",
    3: "Forest and semi-natural areas",
    4: "Wetlands",
    5: "Water bodies",
}
#: The three-digit CLC codes (level 3); the first digit is the level-1 class.
_CLC_CODES = (
    111,
    112,
    121,
    122,
    123,
    124,
    131,
    132,
    133,
    141,
    142,
    211,
    212,
    213,
    221,
    222,
    223,
    231,
    241,
    242,
    243,
    244,
    311,
    312,
    313,
    321,
    322,
    323,
    324,
    331,
    332,
    333,
    334,
    335,
    411,
    412,
    421,
    422,
    423,
    511,
    512,
    521,
    522,
    523,
)

CORINE = Legend(
    "corine",
    "CORINE Land Cover (level 1)",
    {**_CORINE_LEVEL1, **{code: _CORINE_LEVEL1[code // 100] for code in _CLC_CODES}},
    {1: "#e6004d", 2: "#ffffa8", 3: "#80ff00", 4: "#a6a6ff", 5: "#00ccf2"},
)

#: Built-in legends by name (with a few spellings users type).
LEGENDS: dict[str, Legend] = {
    "worldcover": WORLDCOVER,
    "esa-worldcover": WORLDCOVER,
    "dynamic-world": DYNAMIC_WORLD,
    "dynamicworld": DYNAMIC_WORLD,
    "dw": DYNAMIC_WORLD,
    "corine": CORINE,
    "clc": CORINE,
}


def legend_named(name: str) -> Legend | None:
    """The built-in legend called ``name`` (case and ``_``/``-`` ignored), or None."""
    return LEGENDS.get(name.strip().lower().replace("_", "-").replace(" ", "-"))


def legend_by_colours(colours: dict[int, tuple[int, ...]], codes: set[int]) -> Legend | None:
    """The built-in legend whose palette gives every code in ``codes`` its colour in a
    raster's colour table, or None (none or several match)."""
    if not codes:
        return None
    found = []
    for legend in {id(v): v for v in LEGENDS.values()}.values():
        if not codes <= set(legend.colours):
            continue
        if all(_hex(colours.get(c)) == legend.colours[c] for c in codes):
            found.append(legend)
    return found[0] if len(found) == 1 else None


def _hex(rgb: tuple[int, ...] | None) -> str | None:
    if rgb is None:
        return None
    return "#" + "".join(f"{int(v):02x}" for v in rgb[:3])
