"""Progress bar (units/s, ETA) and the end-of-run figures: throughput and time per stage."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from tqdm import tqdm

from rs_reasoner.batch.worker import UnitReport


@dataclass
class Figures:
    """Totals of one run (units done in earlier runs are not counted).

    Attributes:
        units: Units finished in this run.
        pixels: Working pixels of those units.
        area_km2: Their ground area (0 when not georeferenced).
        wall_s: Wall time of the run.
        stages: Summed worker seconds per stage.
    """

    units: int = 0
    pixels: int = 0
    area_km2: float = 0.0
    wall_s: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def units_per_s(self) -> float:
        return self.units / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def mpx_per_s(self) -> float:
        return self.pixels / 1e6 / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def km2_per_h(self) -> float:
        return self.area_km2 / (self.wall_s / 3600) if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        """Lines printed at the end of a batch."""
        lines = [
            f"{self.units} units in {self.wall_s:.1f} s: {self.units_per_s:.2f} units/s, "
            f"{self.mpx_per_s:.2f} Mpx/s"
            + (f", {self.km2_per_h:,.1f} km²/h" if self.area_km2 else ""),
        ]
        total = sum(self.stages.values()) or 1.0
        parts = [f"{k} {v:.1f} s ({100 * v / total:.0f} %)" for k, v in self.stages.items()]
        if parts:
            lines.append("worker time per stage: " + ", ".join(parts))
        return "\n".join(lines)


class Progress:
    """A tqdm bar over units plus the figures of the run.

    Args:
        total: All units of the batch.
        done: Units already done (a resumed batch starts there).
        quiet: No bar.
    """

    def __init__(self, total: int, done: int = 0, quiet: bool = False) -> None:
        self.bar = tqdm(total=total, initial=done, unit="unit", disable=quiet, smoothing=0.1)
        self.figures = Figures()
        self._start = time.perf_counter()

    def advance(self, report: UnitReport, pixels: int, pixel_area_m2: float | None) -> None:
        """Count one finished unit."""
        f = self.figures
        f.units += 1
        f.pixels += pixels
        f.area_km2 += pixels * (pixel_area_m2 or 0.0) / 1e6
        for stage, seconds in report.stages.items():
            f.stages[stage] += seconds
        self.bar.update(1)

    def close(self) -> Figures:
        """Stop the bar; the figures with the wall time set."""
        self.bar.close()
        self.figures.wall_s = time.perf_counter() - self._start
        return self.figures
