"""The built-in land-cover legends the backend knows (``RASTER:LEGEND`` of weak labels),
as the fine-tune dialog shows them: each product's class codes, names and palette.

The plugin cannot import the backend, so this is its one copy;
``tests/plugin/test_land_cover_picker.py`` compares it with the backend's built-in legends
and fails on any difference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinLegend:
    """A product legend.

    Attributes:
        name: What the backend's ``RASTER:NAME`` selects.
        title: The product's name.
        classes: Raster code -> class name (codes in the product's order).
        colours: Raster code -> ``#rrggbb`` of the official palette.
    """

    name: str
    title: str
    classes: dict[int, str]
    colours: dict[int, str]

    def names(self) -> list[str]:
        """Distinct class names in code order."""
        return list(dict.fromkeys(self.classes[c] for c in sorted(self.classes)))

    def codes_of(self, name: str) -> list[int]:
        """The codes named ``name``."""
        return sorted(c for c, n in self.classes.items() if n == name)


WORLDCOVER = BuiltinLegend(
    "worldcover", "ESA WorldCover",
    {10: "Tree cover", 20: "Shrubland", 30: "Grassland", 40: "Cropland", 50: "Built-up",
     60: "Bare / sparse vegetation", 70: "Snow and ice", 80: "Permanent water bodies",
     90: "Herbaceous wetland", 95: "Mangroves", 100: "Moss and lichen"},
    {10: "#006400", 20: "#ffbb22", 30: "#ffff4c", 40: "#f096ff", 50: "#fa0000",
     60: "#b4b4b4", 70: "#f0f0f0", 80: "#0064c8", 90: "#0096a0", 95: "#00cf75",
     100: "#fae6a0"},
)

DYNAMIC_WORLD = BuiltinLegend(
    "dynamic-world", "Dynamic World",
    {0: "Water", 1: "Trees", 2: "Grass", 3: "Flooded vegetation", 4: "Crops",
     5: "Shrub and scrub", 6: "Built", 7: "Bare", 8: "Snow and ice"},
    {0: "#419bdf", 1: "#397d49", 2: "#88b053", 3: "#7a87c6", 4: "#e49635", 5: "#dfc35a",
     6: "#c4281b", 7: "#a59b8f", 8: "#b39fe1"},
)

_CORINE_LEVEL1 = {1: "Artificial surfaces", 2: "Agricultural areas",
                  3: "Forest and semi-natural areas", 4: "Wetlands", 5: "Water bodies"}
#: The three-digit CLC codes: their first digit is the level-1 class.
_CLC_CODES = (111, 112, 121, 122, 123, 124, 131, 132, 133, 141, 142, 211, 212, 213, 221, 222,
              223, 231, 241, 242, 243, 244, 311, 312, 313, 321, 322, 323, 324, 331, 332, 333,
              334, 335, 411, 412, 421, 422, 423, 511, 512, 521, 522, 523)

CORINE = BuiltinLegend(
    "corine", "CORINE Land Cover (level 1)",
    {**_CORINE_LEVEL1, **{code: _CORINE_LEVEL1[code // 100] for code in _CLC_CODES}},
    {1: "#e6004d", 2: "#ffffa8", 3: "#80ff00", 4: "#a6a6ff", 5: "#00ccf2"},
)

#: The legends a user picks from, in the order shown.
BUILTIN_LEGENDS: tuple[BuiltinLegend, ...] = (WORLDCOVER, DYNAMIC_WORLD, CORINE)


def builtin_legend(name: str | None) -> BuiltinLegend | None:
    """The built-in legend called ``name``, or None."""
    return next((legend for legend in BUILTIN_LEGENDS if legend.name == name), None)


def legend_by_colours(colours: dict[int, str]) -> BuiltinLegend | None:
    """The built-in legend whose palette gives every code of a raster's colour table
    (code -> ``#rrggbb``) its colour, or None when none or several match (as the backend
    recognises a product by its colour table)."""
    if not colours:
        return None
    found = [legend for legend in BUILTIN_LEGENDS
             if set(colours) <= set(legend.colours)
             and all(legend.colours[c] == colours[c].lower() for c in colours)]
    return found[0] if len(found) == 1 else None
