"""Weak labels from land-cover maps, on the real Slovenia raster and its land-use parcels:
a WorldCover-coded product made from the parcels at 3x coarser resolution in EPSG:4326
is read back through reprojection, legends, mapping and agreement; bad inputs get one
clear error each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio import features
from rasterio.warp import calculate_default_transform, reproject

from rs_reasoner.landcover import LandCoverError
from rs_reasoner.landcover.legends import WORLDCOVER
from rs_reasoner.landcover.mapping import apply_mapping, build_mapping, read_mapping_rows
from rs_reasoner.landcover.products import NO_CODE, Grid, ProductSpec, read_product
from rs_reasoner.models.product_fusion import NO_LABEL, boundary_weight, fuse_with_products
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.data.parcels import label_raster
from rs_reasoner_training.errors import LabelLayerError
from rs_reasoner_training.weak.agreement import cohen_kappa, measure, report_lines
from rs_reasoner_training.weak.training import prepare_weak_labels
from tests.conftest import SHARED_DATA

#: Slovenia land-use class -> WorldCover code of the made-up product.
CODES = {
    "forest": 10,
    "schrubland": 20,
    "grassland": 30,
    "cultivated land": 40,
    "artificial surface": 50,
}
MAPPING = (
    "product class,user class\nTree cover,forest\nShrubland,schrubland\n"
    "Grassland,grassland\nCropland,cultivated land\nBuilt-up,artificial surface\n"
)


@pytest.fixture(scope="module")
def slovenia():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder {SHARED_DATA} is missing")
    root = SHARED_DATA / "slovenia"
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    labels, parcels = label_raster(raster, root / "slovenia_lulc.gpkg", "LULC_NAME")
    with rasterio.open(raster) as ds:
        grid = Grid(ds.crs, ds.transform, (ds.height, ds.width))
    return raster, root / "slovenia_lulc.gpkg", labels, parcels, grid


def write_product(
    folder: Path,
    parcels,
    grid: Grid,
    factor: int = 3,
    name: str = "wc",
    colours: bool = True,
    shift: float = 0.0,
) -> Path:
    """The parcels rasterised with WorldCover codes on a ``factor`` x coarser grid, stored
    in EPSG:4326 (with WorldCover's colour table); ``shift`` moves it east (metres)."""
    frame = parcels.frame
    coarse_t = grid.transform @ Affine.scale(factor)
    coarse_t = Affine.translation(shift, 0) @ coarse_t
    shape = (-(-grid.shape[0] // factor), -(-grid.shape[1] // factor))
    shapes = [
        (g, CODES[parcels.class_names[c]])
        for g, c in zip(frame.geometry, frame["class_id"], strict=True)
    ]
    codes = features.rasterize(shapes, out_shape=shape, transform=coarse_t, fill=0, dtype="uint8")
    bounds = rasterio.transform.array_bounds(*shape, coarse_t)
    dst_t, w, h = calculate_default_transform(grid.crs, "EPSG:4326", shape[1], shape[0], *bounds)
    out = np.zeros((h, w), np.uint8)
    reproject(
        codes,
        out,
        src_transform=coarse_t,
        src_crs=grid.crs,
        dst_transform=dst_t,
        dst_crs="EPSG:4326",
        src_nodata=0,
        dst_nodata=0,
    )
    path = folder / f"{name}.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=dst_t,
        nodata=0,
    ) as ds:
        ds.write(out, 1)
        if colours:
            ds.write_colormap(1, {c: _rgb(v) for c, v in WORLDCOVER.colours.items()})
    return path


def _rgb(h: str) -> tuple[int, int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16), 255


def test_product_is_reprojected_recognised_and_mapped(slovenia, tmp_path: Path) -> None:
    raster, _, labels, parcels, grid = slovenia
    path = write_product(tmp_path, parcels, grid)
    product = read_product(ProductSpec(str(path)), grid)
    assert "ESA WorldCover" in product.legend.origin and "colour table" in product.legend.origin
    assert 2.5 < product.pixel_ratio < 3.5
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(MAPPING)
    table = build_mapping(
        product.legend, parcels.class_names, product.name, read_mapping_rows(mapping)
    )
    weak = apply_mapping(product.codes, table)
    both = (labels != IGNORE_INDEX) & (weak != IGNORE_INDEX)
    # A 3x coarser, reprojected copy of the parcels agrees with them on most pixels,
    # but not all: its boundaries are blocky.
    agreement = float((weak[both] == labels[both]).mean())
    assert 0.8 < agreement < 1.0
    report = measure(product.name, weak, labels, parcels.class_names, product.pixel_ratio)
    assert 0.7 < report.kappa < 1.0
    assert all(v is None or v > 0.5 for v in report.class_kappa.values())
    lines = report_lines([report], parcels.class_names)
    assert "kappa" in lines[1] and any("forest" in line for line in lines)


def test_legend_from_sidecar_qml_and_csv_and_names_by_default(slovenia, tmp_path: Path) -> None:
    _, _, labels, parcels, grid = slovenia
    path = write_product(tmp_path, parcels, grid, colours=False)
    assert not read_product(ProductSpec(str(path)), grid).legend.named  # codes only
    entries = "".join(
        f'<paletteEntry value="{code}" label="{name}"/>' for name, code in CODES.items()
    )
    path.with_suffix(".qml").write_text(
        f"<qgis><pipe><colorPalette>{entries}</colorPalette></pipe></qgis>"
    )
    product = read_product(ProductSpec(str(path)), grid)
    assert product.legend.origin == "sidecar wc.qml"
    # Same names as the user's classes: no mapping file needed.
    table = build_mapping(product.legend, parcels.class_names, product.name)
    assert sorted(table) == sorted(CODES.values())
    path.with_suffix(".qml").unlink()
    path.with_suffix(".csv").write_text("value,label\n10,forest\n50,artificial surface\n")
    product = read_product(ProductSpec(str(path)), grid)
    assert product.legend.origin == "sidecar wc.csv"
    table = build_mapping(product.legend, parcels.class_names, product.name)
    assert table == {
        10: parcels.class_names.index("forest"),
        50: parcels.class_names.index("artificial surface"),
    }


def test_spec_parsing() -> None:
    assert ProductSpec.parse("wc.tif") == ProductSpec("wc.tif")
    assert ProductSpec.parse("wc.tif:map.csv") == ProductSpec("wc.tif", None, "map.csv")
    assert ProductSpec.parse("wc.tif:worldcover") == ProductSpec("wc.tif", "worldcover")
    # Windows paths with a legend or mapping file after them (the plugin writes these).
    assert ProductSpec.parse("C:\\d\\wc.tif:corine:C:\\tmp\\m.csv") == ProductSpec(
        "C:\\d\\wc.tif", "corine", "C:\\tmp\\m.csv"
    )
    assert ProductSpec.parse("D:/d/wc.tif:D:/m.csv") == ProductSpec("D:/d/wc.tif", None, "D:/m.csv")
    assert ProductSpec.parse("/d/wc.tif:worldcover:/tmp/m.csv") == ProductSpec(
        "/d/wc.tif", "worldcover", "/tmp/m.csv"
    )
    assert ProductSpec.parse("C:\\d\\wc.tif:corine:m.csv") == ProductSpec(
        "C:\\d\\wc.tif", "corine", "m.csv"
    )
    with pytest.raises(LandCoverError, match="neither a built-in legend nor a mapping"):
        ProductSpec.parse("wc.tif:nonsense")


def test_unknown_user_classes_are_one_error_listing_them(slovenia, tmp_path: Path) -> None:
    _, _, _, parcels, grid = slovenia
    product = read_product(ProductSpec(str(write_product(tmp_path, parcels, grid))), grid)
    bad = tmp_path / "bad.csv"
    bad.write_text("Tree cover,Forest land\nBuilt-up,urban\nGrassland,grassland\n")
    with pytest.raises(LandCoverError) as err:
        build_mapping(product.legend, parcels.class_names, product.name, read_mapping_rows(bad))
    text = str(err.value)
    assert "Tree cover -> Forest land" in text and "Built-up -> urban" in text
    assert "grassland -> " not in text.lower().split("your classes")[0].split("yours:")[1]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("Forest,forest\n")
    with pytest.raises(LandCoverError, match="'Forest' that wc does not have"):
        build_mapping(product.legend, parcels.class_names, product.name, read_mapping_rows(unknown))


def test_continuous_band_is_refused(slovenia) -> None:
    raster, _, _, _, grid = slovenia
    with pytest.raises(LandCoverError, match="continuous .* not a land-cover map"):
        read_product(ProductSpec(str(raster)), grid)


def test_product_outside_the_raster_or_the_parcels(slovenia, tmp_path: Path) -> None:
    _, _, labels, parcels, grid = slovenia
    far = write_product(tmp_path, parcels, grid, name="far", shift=50_000.0)
    with pytest.raises(LandCoverError, match="does not overlap the raster"):
        read_product(ProductSpec(str(far)), grid)
    product = read_product(ProductSpec(str(write_product(tmp_path, parcels, grid))), grid)
    weak = apply_mapping(
        product.codes,
        build_mapping(product.legend, parcels.class_names, "wc", [("Tree cover", "forest")]),
    )
    elsewhere = np.where(weak == IGNORE_INDEX, labels, IGNORE_INDEX).astype(np.uint8)
    elsewhere[labels == parcels.class_names.index("forest")] = IGNORE_INDEX
    with pytest.raises(LabelLayerError, match="does not overlap the training parcels"):
        measure("wc", weak, elsewhere, parcels.class_names)


def test_agreement_confidence_and_boundaries(slovenia, tmp_path: Path) -> None:
    _, _, labels, parcels, grid = slovenia
    mapping = tmp_path / "m.csv"
    mapping.write_text(MAPPING)
    fine = write_product(tmp_path, parcels, grid, factor=1, name="fine")
    coarse = write_product(tmp_path, parcels, grid, factor=5, name="coarse")
    weak = prepare_weak_labels(
        [f"{fine}:{mapping}", f"{coarse}:{mapping}"], grid, parcels.class_names, labels
    )
    assert [r.name for r in weak.reports] == ["fine", "coarse"]
    assert weak.reports[0].kappa > weak.reports[1].kappa
    has = weak.labels != IGNORE_INDEX
    assert has.sum() > 0.5 * (labels != IGNORE_INDEX).sum()
    # Where both products agree deep inside a region, confidence is highest; where they
    # disagree, lowest.
    products = [
        apply_mapping(
            read_product(ProductSpec(str(p)), grid).codes,
            build_mapping(
                read_product(ProductSpec(str(p)), grid).legend,
                parcels.class_names,
                "p",
                read_mapping_rows(mapping),
            ),
        )
        for p in (fine, coarse)
    ]
    agree = has & (products[0] == products[1])
    disagree = has & (products[0] != products[1]) & (products[1] != IGNORE_INDEX)
    assert disagree.any()
    assert weak.confidence[agree].mean() > weak.confidence[disagree].mean() + 0.2
    b = boundary_weight(products[1], 5.0)
    edge = np.zeros_like(has)
    edge[:-1] |= products[1][1:] != products[1][:-1]
    assert b[edge & has].mean() < b[~edge & has].mean()
    assert cohen_kappa(
        labels[labels != IGNORE_INDEX],
        labels[labels != IGNORE_INDEX].astype(np.int64),
        len(parcels.class_names),
    ) == pytest.approx(1.0)


def test_fusion_recovers_a_class_the_product_omits(slovenia, tmp_path: Path) -> None:
    _, _, labels, parcels, grid = slovenia
    k = len(parcels.class_names)
    forest = parcels.class_names.index("forest")
    product = labels.copy()
    product[product == forest] = parcels.class_names.index("grassland")  # forest omitted
    product[product == IGNORE_INDEX] = NO_LABEL
    # A model that is right with probability 0.6 everywhere on the parcels.
    probs = np.full((k, *labels.shape), 0.4 / (k - 1), np.float32)
    inside = labels != IGNORE_INDEX
    for c in range(k):
        probs[c][inside & (labels == c)] = 0.6
    # Measured against the parcels, the product's grassland is often forest: less reliable.
    report = measure(
        "p",
        np.where(product == NO_LABEL, IGNORE_INDEX, product).astype(np.uint8),
        labels,
        parcels.class_names,
    )
    reliability = np.array([report.reliability[c] for c in parcels.class_names])
    assert reliability[parcels.class_names.index("grassland")] < 0.8
    fused = fuse_with_products(probs, [product], [reliability], [3.0])
    pred = fused.argmax(0)
    # The product never gives forest: it neither supports nor rules it out.
    assert (pred[labels == forest] == forest).mean() > 0.95
    np.testing.assert_allclose(fused.sum(0)[inside], 1.0, rtol=1e-5)
    # Where its mapping does give a class, deep inside its region it outweighs a
    # lukewarm model.
    grass = parcels.class_names.index("grassland")
    wrong = probs.copy()
    wrong[:, labels == grass] = 0.4 / (k - 1)
    wrong[forest, labels == grass] = 0.6
    every = [np.ones(k, bool)]
    pred = fuse_with_products(wrong, [product], [np.full(k, 0.9)], [1.0], every).argmax(0)
    assert (labels == grass).sum() > 100 and (pred[labels == grass] == grass).all()
    # Without the mapping's classes, the product's silence on forest lets the model win.
    pred = fuse_with_products(wrong, [product], [np.full(k, 0.9)], [1.0]).argmax(0)
    assert (pred[labels == grass] == forest).all()


def test_fusion_beats_the_coarse_product_and_a_noisy_model(slovenia, tmp_path: Path) -> None:
    """A 3x coarser product (reprojected to EPSG:4326 and back) is wrong along its
    blocky boundaries, a model right on 60 % of pixels is wrong everywhere at random;
    fused, the product settles the interiors and the model the boundaries."""
    _, _, labels, parcels, grid = slovenia
    k = len(parcels.class_names)
    product = read_product(ProductSpec(str(write_product(tmp_path, parcels, grid))), grid)
    table = build_mapping(product.legend, parcels.class_names, "wc", read_mapping_rows(
        _mapping(tmp_path)))  # fmt: skip
    coarse = apply_mapping(product.codes, table)
    rng = np.random.default_rng(0)
    right = rng.random(labels.shape) < 0.6
    noise = rng.integers(0, k, labels.shape)
    guess = np.where(right | (labels == IGNORE_INDEX), labels, noise) % 256
    probs = np.full((k, *labels.shape), 0.4 / (k - 1), np.float32)
    for c in range(k):
        probs[c][guess == c] = 0.6
    inside = labels != IGNORE_INDEX
    given = np.zeros(k, bool)
    given[list(table.values())] = True
    fused = fuse_with_products(probs, [coarse], [np.full(k, 0.7)], [product.pixel_ratio], [given])
    accuracy = {
        name: float((pred[inside] == labels[inside]).mean())
        for name, pred in (("product", coarse), ("model", guess), ("fused", fused.argmax(0)))
    }
    assert product.pixel_ratio > 2.5
    assert accuracy["fused"] > accuracy["product"] + 0.02, accuracy
    assert accuracy["fused"] > accuracy["model"] + 0.1, accuracy


def _mapping(folder: Path) -> Path:
    path = folder / "mapping.csv"
    path.write_text(MAPPING)
    return path
    assert NO_CODE == -1


def test_weak_labels_join_parcel_training_data(slovenia, tmp_path: Path) -> None:
    from rs_reasoner_training.data.tiles import parcel_training_data
    from rs_reasoner_training.weak.training import add_weak_labels

    raster, gpkg, labels, parcels, grid = slovenia
    mapping = tmp_path / "m.csv"
    mapping.write_text(MAPPING)
    product = write_product(tmp_path, parcels, grid, factor=3)
    data = parcel_training_data(
        raster, gpkg, "LULC_NAME", tile_size=32, label_budget=0.3, bands=[1]
    )
    lines: list[str] = []
    weak = add_weak_labels(data, [f"{product}:{mapping}"], note=lines.append)
    assert lines[0].startswith("weak labels: agreement") and any("kappa" in x for x in lines[1:])
    assert len(weak.labelled) >= len(data.labelled)
    assert [r for r in weak.val.refs] == [r for r in data.val.refs]
    assert weak.summary["weak_labels"]["products"][0]["name"] == "wc"
    source = weak.labelled.source
    weighted = 0
    for ref in weak.labelled.refs:
        _, valid, parcel_label = (
            data.labelled.source.read_raw(ref, "train")
            if ref in set(data.labelled.refs)
            else (None, None, np.full((32, 32), IGNORE_INDEX, np.uint8))
        )
        raw, valid, label, weight = source.read_weighted(ref, "train")
        has = parcel_label != IGNORE_INDEX
        # Parcels always win; weak labels only where they leave a pixel unlabelled.
        assert (label[has] == parcel_label[has]).all()
        assert (weight[has] == 1.0).all()
        weighted += int(((weight < 1.0) & (label != IGNORE_INDEX)).sum())
    assert weighted > 0
    # Validation tiles never get weak labels.
    for ref in weak.val.refs:
        assert (source.read(ref, "val").label == data.val.source.read(ref, "val").label).all()


def test_classical_learner_weighs_labels_by_confidence(slovenia) -> None:
    from rs_reasoner.models.pixel_features import FeatureSpec
    from rs_reasoner.raster.band_roles import band_roles
    from rs_reasoner.raster.band_stats import BandStats, read_bands
    from rs_reasoner_training.classical import ClassicalConfig, LabelledImage, fit_classical

    raster, _, labels, parcels, _ = slovenia
    with rasterio.open(raster) as ds:
        bands = list(range(1, ds.count + 1))
        raw, valid = read_bands(ds, bands)
        stats, roles = BandStats.from_raster(ds), band_roles(ds, bands)
    spec = FeatureSpec.for_bands(stats.count, roles)
    config = ClassicalConfig(rounds_without_validation=40, threads=1, max_pixels_per_class=3000)
    forest, grass = (parcels.class_names.index(c) for c in ("forest", "grassland"))
    keep = labels != IGNORE_INDEX
    # Two forest rows in three come from a weak source that calls them grassland, with
    # confidence 0; the third keeps its true label.
    wrong = (labels == forest) & (np.arange(labels.shape[0])[:, None] % 3 != 0)
    merged = np.where(wrong, grass, labels).astype(np.uint8)
    weight = np.where(wrong, 0.0, 1.0).astype(np.float32)

    def forest_probability(w: np.ndarray | None) -> float:
        model = fit_classical(
            [LabelledImage(raw, valid, merged, weight=w)], parcels.class_names, stats, spec, config
        )
        return float(model.predict_proba(raw, valid)[forest][keep & (labels == forest)].mean())

    # Ignoring the zero-confidence labels, the learner is surer the forest is forest.
    with_weights, without = forest_probability(weight), forest_probability(None)
    assert with_weights > without + 0.15, (with_weights, without)


def test_a_product_that_cannot_tell_the_classes_apart_changes_nothing() -> None:
    """Every product class mapped to one class of a two-class model: the product says
    nothing about that class against the other. The never-given class used to get
    likelihood 1 against the given class's reliability (0.7), so the given class shrank
    wherever the product covered it."""
    rng = np.random.default_rng(0)
    probs = rng.random((2, 40, 40)).astype(np.float32)
    probs /= probs.sum(0, keepdims=True)
    product = np.zeros((40, 40), np.uint8)  # everything "class 0"
    product[:5] = NO_LABEL
    given = [np.array([True, False])]
    fused = fuse_with_products(probs, [product], [np.array([0.7, 0.7])], [10.0], given)
    np.testing.assert_allclose(fused, probs, rtol=1e-5)
    # A product that gives both classes still moves the model towards its labels.
    product[20:] = 1
    both = fuse_with_products(probs, [product], [np.array([0.7, 0.7])], [1.0])
    assert (both.argmax(0)[6:] == product[6:]).mean() > (probs.argmax(0)[6:] == product[6:]).mean()
