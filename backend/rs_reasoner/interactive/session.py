"""One click-to-segment session: an extent's SAM image embedding, and clicks → polygon.

The extent is read once as RGB (at most :data:`MAX_SIDE` pixels a side: SAM resizes its
input to 1024² anyway, so finer pixels would only cost reading time) and encoded once;
each prompt then runs only SAM's prompt encoder and mask decoder on the kept embedding.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import mapping

from rs_reasoner.device import autocast
from rs_reasoner.errors import ExtentError, InvalidRequestError
from rs_reasoner.interactive.schemas import PromptRequest, SessionRequest
from rs_reasoner.raster import ExtentReader, open_raster, source_pixel_size
from rs_reasoner.vector.vectorize import vectorize

#: Longest side of the image SAM embeds (its own input side).
MAX_SIDE = 1024
#: Mask parts smaller than this many pixels are dropped: SAM's mask is upsampled from
#: 256² logits and leaves specks of a pixel or two along strong edges.
MIN_PIXELS = 4


class ClickSession:
    """An extent embedded by SAM; :meth:`prompt` turns clicks into a polygon.

    Attributes:
        id: The session id.
        width, height: Pixels of the embedded image.
        transform: Pixel → raster CRS of the image.
        crs: The raster's CRS (None for rasters without one).
        prompt_crs: CRS of clicks and answers (the request extent's, else ``crs``).
        encode_s: Seconds the image encoder took.
    """

    def __init__(
        self,
        session_id: str,
        predictor: Any,
        image: np.ndarray,
        valid: np.ndarray,
        transform: Affine,
        crs: CRS | None,
        prompt_crs: CRS | None,
    ) -> None:
        self.id = session_id
        self.predictor = predictor
        self.height, self.width = image.shape[:2]
        self.valid = valid
        self.transform = transform
        self.crs = crs
        self.prompt_crs = prompt_crs
        same = crs is None or prompt_crs is None or crs == prompt_crs
        self._to_raster = None if same else Transformer.from_crs(prompt_crs, crs, always_xy=True)
        self._to_prompt = None if same else Transformer.from_crs(crs, prompt_crs, always_xy=True)
        self.last_used = time.monotonic()
        start = time.perf_counter()
        import torch

        with torch.inference_mode(), autocast(self.device):
            predictor.set_image(np.ascontiguousarray(image))
        self._sync()
        self.encode_s = time.perf_counter() - start

    @classmethod
    def from_raster(
        cls, session_id: str, predictor: Any, raster_path: str, request: SessionRequest
    ) -> ClickSession:
        """Read the request's extent of a raster (at most :data:`MAX_SIDE` px) and embed it.

        Raises:
            RasterError, ExtentError, InvalidRequestError: As for a job's raster and extent.
        """
        with open_raster(raster_path) as ds:
            reader = ExtentReader.place(ds, request.extent, request.bands)
            long_side = max(reader.width, reader.height)
            resolution = None
            if long_side > MAX_SIDE:
                resolution = source_pixel_size(ds) * long_side / MAX_SIDE
            reader = ExtentReader.open(ds, request.extent, request.bands, resolution)
            image, valid = reader.read_extent()
            transform, crs = reader.transform, reader.crs
        if not valid.any():
            raise ExtentError(
                "The extent shows only NoData of this raster.",
                "Pan the map to where the raster has data and start again.",
            )
        raster_crs = CRS.from_user_input(crs) if crs is not None else None
        prompt_crs = CRS.from_user_input(request.extent.crs) if request.extent.crs else raster_crs
        return cls(session_id, predictor, image, valid, transform, raster_crs, prompt_crs)

    @property
    def device(self) -> Any:
        return getattr(self.predictor, "device", "cpu")

    def _sync(self) -> None:
        device = self.device
        if getattr(device, "type", str(device)).startswith("cuda"):
            import torch

            torch.cuda.synchronize(device)

    # -- clicks --------------------------------------------------------------------------

    def _pixels(self, xs: list[float], ys: list[float]) -> np.ndarray:
        """Session-CRS coordinates → (N, 2) image pixel coordinates (x = column)."""
        if self._to_raster is not None:
            xs, ys = self._to_raster.transform(xs, ys)
        inverse = ~self.transform
        pixels = [inverse @ (x, y) for x, y in zip(xs, ys, strict=True)]
        return np.array(pixels, np.float32).reshape(-1, 2)

    def prompt(self, request: PromptRequest) -> dict[str, Any]:
        """Clicks and box → the object's polygon (GeoJSON, in the session's CRS).

        Returns:
            A FeatureCollection with zero or one feature (``score``: SAM's predicted IoU,
            ``area`` in square units of the raster CRS) plus ``decode_ms`` (SAM's prompt
            encoder and mask decoder) and ``total_ms``.

        Raises:
            InvalidRequestError: A click or the box lies outside the session's extent.
        """
        start = time.perf_counter()
        coords = labels = box = None
        if request.points:
            coords = self._pixels([p.x for p in request.points], [p.y for p in request.points])
            labels = np.array([1 if p.positive else 0 for p in request.points], np.int32)
            self._check_inside(coords, "A click")
        if request.box is not None:
            x0, y0, x1, y1 = request.box
            corners = self._pixels([x0, x1, x1, x0], [y0, y0, y1, y1])
            box = np.array([*corners.min(axis=0), *corners.max(axis=0)], np.float32)
            box = np.clip(box, 0, [self.width, self.height, self.width, self.height])
            if box[2] <= box[0] or box[3] <= box[1]:
                self._check_inside(corners, "The box")
        # One click is ambiguous (a roof or the whole house?): ask SAM for its three
        # candidate masks and keep the one it rates best, as SAM's own demo does.
        multimask = box is None and coords is not None and len(coords) == 1
        import torch

        decode = time.perf_counter()
        with torch.inference_mode(), autocast(self.device):
            masks, ious, _ = self.predictor.predict(
                point_coords=coords, point_labels=labels, box=box,
                multimask_output=multimask, return_logits=True,
            )
        self._sync()
        decode_s = time.perf_counter() - decode
        masks = np.asarray(masks, np.float32).reshape(-1, self.height, self.width)
        ious = np.ravel(np.asarray(ious, np.float32))
        best = int(np.argmax(ious))
        self.last_used = time.monotonic()
        features = self._features(masks[best], float(ious[best]))
        return {
            "type": "FeatureCollection",
            "features": features,
            "decode_ms": round(decode_s * 1000, 2),
            "total_ms": round((time.perf_counter() - start) * 1000, 2),
        }

    def _check_inside(self, pixels: np.ndarray, what: str) -> None:
        inside = ((pixels[:, 0] >= 0) & (pixels[:, 0] <= self.width)
                  & (pixels[:, 1] >= 0) & (pixels[:, 1] <= self.height))
        if not inside.all():
            raise InvalidRequestError(
                f"{what} lies outside the extent this session embedded.",
                "Click inside it, or start a new session for the current map view.",
            )

    def _features(self, logits: np.ndarray, iou: float) -> list[dict[str, Any]]:
        mask = (logits > 0) & self.valid
        pixel_area = abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)
        polygons = vectorize(
            mask.astype(np.int32), 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30))), ["object"],
            self.transform, self.crs, valid=self.valid, min_area=MIN_PIXELS * pixel_area,
        )
        if polygons.empty:
            return []
        geom = shapely.union_all(polygons.geometry.values)
        area = float(polygons["area"].sum())
        if self._to_prompt is not None:
            geom = shapely.transform(geom, self._to_prompt.transform, interleaved=False)
        return [{
            "type": "Feature",
            "geometry": mapping(geom),
            "properties": {"label": "object", "score": round(iou, 4), "area": round(area, 2),
                           "parts": len(polygons)},
        }]

    def close(self) -> None:
        """Drop the embedding."""
        self.predictor = None
