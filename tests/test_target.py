"""povmap:target — budgeted geographic targeting: every number of the outputs against an independent pandas
computation on the written layers, population sums against QGIS's zonal statistics, edge cases, bad input."""

import csv
import json
import os

import numpy as np
import pandas
import pytest
from helpers import carried_styles, read_grid

from povmap_qgis.core.errors import PovmapInputError

ROWS, COLUMNS = 12, 15
X0, Y0 = 600000.0, 2900000.0  # EPSG:32642 (UTM 42N), about 26.2° N 70° E
CELL = 1000.0
PIXEL_DEG = 1.0 / 1200.0  # 3 arc-seconds, about 90 m: WorldPop's resolution
DISTRICTS = ("Dadu", "Khairpur", "Sanghar")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELECTION_QML = os.path.join(ROOT, "resources", "styles", "targeting_selection.qml")


def cell_frame(crs="EPSG:32642", **fields):
    import geopandas
    import shapely

    rows, columns = np.divmod(np.arange(ROWS * COLUMNS), COLUMNS)
    geometries = shapely.box(
        X0 + columns * CELL, Y0 + rows * CELL, X0 + (columns + 1) * CELL, Y0 + (rows + 1) * CELL
    )
    cell_ids = (rows + 2900) * 10**9 + (columns + 600)
    return geopandas.GeoDataFrame({"cell_id": cell_ids, **fields}, geometry=geometries, crs=crs)


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """A prediction layer (with ties, cells without a prediction or district), a population raster, a truth grid."""
    import rasterio
    from pyproj import Transformer

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    folder = tmp_path_factory.mktemp("target")
    rng = np.random.default_rng(11)
    n = ROWS * COLUMNS
    rows, columns = np.divmod(np.arange(n), COLUMNS)
    district = np.array(DISTRICTS, dtype=object)[columns // 5]
    district[[3, 40]] = None  # cells without a district: no floor, no cap
    latent = rng.normal(0, 1, n) + 0.15 * (rows - ROWS / 2) + 0.7 * (1 - columns // 5)
    probability = np.round(1 / (1 + np.exp(-latent)), 2)  # rounded: ties
    probability[[7, 77, 150]] = np.nan  # cells without a prediction
    label = (latent + rng.normal(0, 0.7, n) > 0).astype("int32")
    predictions = cell_frame(
        district=district,
        prob_compact_cnn=probability,
        prob_mean=probability,
        prob_raw=probability,  # a calibrated layer (predict writes prob_raw beside the calibrated prob_mean)
        votes=(np.nan_to_num(probability) >= 0.5).astype("int32"),
        pred=(np.nan_to_num(probability) >= 0.5).astype("int32"),
        prob_baseline=np.round(np.clip(probability + rng.normal(0, 0.2, n), 0, 1), 3),
        out_of_range=(np.arange(n) % 23 == 0).astype("int32"),
    )
    paths = {"folder": folder, "predictions": str(folder / "predictions.gpkg")}
    write_layer(
        predictions,
        paths["predictions"],
        style_path("prediction_class"),
        "povmap prediction (class)",
        metadata={"povmap_model": "/nowhere/demo.povmodel", "povmap_members": "compact_cnn"},
    )
    truth = cell_frame(label=label).iloc[np.arange(0, n, 2)]  # every other cell surveyed
    paths["truth"] = str(folder / "truth.gpkg")
    truth.to_file(paths["truth"], engine="pyogrio")

    # population: people per 3" pixel in EPSG:4326, empty west of the third column (cells with nobody)
    to_lonlat = Transformer.from_crs("EPSG:32642", "EPSG:4326", always_xy=True)
    west, south = to_lonlat.transform(X0 - 2000, Y0 - 2000)
    east, north = to_lonlat.transform(X0 + COLUMNS * CELL + 2000, Y0 + ROWS * CELL + 2000)
    width, height = int((east - west) / PIXEL_DEG) + 1, int((north - south) / PIXEL_DEG) + 1
    transform = rasterio.transform.from_origin(west, north, PIXEL_DEG, PIXEL_DEG)
    lon = west + (np.arange(width) + 0.5) * PIXEL_DEG
    lat = north - (np.arange(height) + 0.5) * PIXEL_DEG
    people = rng.gamma(4.0, 1.2, (height, width)) * (1 + np.sin(lat[:, None] * 300) ** 2)
    empty_west_of, _ = to_lonlat.transform(X0 + 2.4 * CELL, Y0)
    people[:, lon < empty_west_of + 0.004] = (
        0.0  # 0.004° margin: the grid is turned against lon/lat
    )
    people = people.astype("float32")
    paths["population"] = str(folder / "population.tif")
    with rasterio.open(
        paths["population"],
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=transform,
        nodata=-1,
    ) as target:
        target.write(people, 1)
    elsewhere = rasterio.transform.from_origin(west + 5, north, PIXEL_DEG, PIXEL_DEG)
    paths["population_elsewhere"] = str(folder / "population_elsewhere.tif")
    with rasterio.open(
        paths["population_elsewhere"],
        "w",
        driver="GTiff",
        width=50,
        height=50,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=elsewhere,
    ) as target:
        target.write(np.ones((50, 50), "float32"), 1)
    paths["not_predictions"] = str(folder / "grid.gpkg")
    cell_frame(district=district).to_file(paths["not_predictions"], engine="pyogrio")
    return paths


def run_target(layers, name, **settings):
    """Run the core step; return (summary, written cells, allocation CSV rows, warnings)."""
    from povmap_qgis.core.decision.targeting import TargetOptions, target
    from povmap_qgis.core.progress import RecordingReporter

    folder = layers["folder"]
    options = TargetOptions(
        predictions_path=layers["predictions"],
        output_path=str(folder / f"{name}.gpkg"),
        allocation_path=str(folder / f"{name}_allocation.csv"),
        style_qml_path=SELECTION_QML,
        **settings,
    )
    reporter = RecordingReporter()
    summary = target(options, reporter)
    cells = read_grid(options.output_path)
    with open(options.allocation_path, encoding="utf-8") as handle:
        allocation = list(csv.DictReader(handle))
    return summary, cells, allocation, reporter.warnings


def reference_ranking(cells, rank_by, eligible, id_field="cell_id"):
    """Eligible cells, best first: by rank_by, then the other quantity, then the id — with pandas."""
    frame = cells[eligible].assign(
        expected=cells["prob_mean"] * cells.get("population", 1.0),
    )
    first, second = (
        ("prob_mean", "expected") if rank_by == "probability" else ("expected", "prob_mean")
    )
    return frame.sort_values(
        [first, second, id_field], ascending=[False, False, True], kind="mergesort"
    )


def reference_selection(ordered, cost, budget, district=None, floor=None, cap=None):
    """The selection rule written out plainly: floors first (best cells of each district under its floor),
    then down the ranking, passing over cells that overshoot the budget or a cap."""
    totals = cost.groupby(district).sum() if district is not None else None
    spent, spent_in, chosen = 0.0, {}, []

    def fits(index):
        name = district[index] if district is not None else None
        if cap is not None and name is not None:
            if spent_in.get(name, 0.0) + cost[index] > cap * totals[name] + 1e-9:
                return False
        return spent + cost[index] <= budget + 1e-9

    if floor:
        for index in ordered.index:
            name = district[index]
            if name is None or spent_in.get(name, 0.0) >= floor * totals[name] - 1e-9:
                continue
            if fits(index):
                chosen.append(index)
                spent += cost[index]
                spent_in[name] = spent_in.get(name, 0.0) + cost[index]
    for index in ordered.index:
        if index in chosen or not fits(index):
            continue
        chosen.append(index)
        spent += cost[index]
        name = district[index] if district is not None else None
        spent_in[name] = spent_in.get(name, 0.0) + cost[index]
    return set(chosen)


def test_share_of_cells_by_probability_matches_pandas(layers):
    summary, cells, allocation, warnings = run_target(
        layers, "cells30", budget=0.3, budget_unit="share_of_cells"
    )
    predicted = cells["prob_mean"].notna()
    ordered = reference_ranking(cells, "probability", predicted)
    budget = int(np.floor(0.3 * len(cells)))
    assert list(cells.loc[ordered.index, "rank"]) == list(range(1, predicted.sum() + 1))
    assert cells.loc[~predicted, "rank"].isna().all()
    assert set(cells.index[cells["selected"] == 1]) == set(ordered.index[:budget])
    assert summary["selected_cells"] == budget == 54
    # expected numbers: e = p (cells), coverage = Σ_sel p / Σ p, inclusion = 1 − Σ_sel p / n_sel
    chosen = cells[cells["selected"] == 1]
    assert np.allclose(cells["expected_poor"].fillna(-1), cells["prob_mean"].fillna(-1))
    coverage = chosen["prob_mean"].sum() / cells["prob_mean"].sum()
    assert summary["expected"]["coverage"] == pytest.approx(coverage)
    assert summary["expected"]["exclusion_error"] == pytest.approx(1 - coverage)
    assert summary["expected"]["inclusion_error"] == pytest.approx(
        1 - chosen["prob_mean"].sum() / len(chosen)
    )
    assert summary["selected_people"] is None and "population" not in cells
    # the targeting curve: cumulative shares down the ranking
    x, y = summary["curves"]["expected"]["model"]
    reference_y = np.concatenate([[0], ordered["prob_mean"].cumsum() / ordered["prob_mean"].sum()])
    assert np.allclose(y, reference_y, atol=1e-6)
    assert np.allclose(x, np.arange(len(ordered) + 1) / len(ordered), atol=1e-6)
    assert summary["budget_point"]["y"] == pytest.approx(coverage)
    # allocation per district: the CSV (rounded as written: expected poor to a tenth, shares to
    # four decimals); OUTPUT is one layer, so QGIS opens it without asking which to add
    reference = cells.assign(district=cells["district"].fillna("(no district)")).groupby("district")
    table = pandas.read_csv(layers["folder"] / "cells30_allocation.csv").set_index("district")
    assert list(table.index) == sorted(reference.groups)
    assert (table["cells"] == reference.size()).all()
    assert (table["cells_selected"] == reference["selected"].sum()).all()
    assert np.allclose(table["expected_poor"], reference["prob_mean"].sum(), atol=0.05)
    assert np.allclose(
        table["expected_poor_covered"],
        reference[["selected", "prob_mean"]].apply(
            lambda group: group.loc[group["selected"] == 1, "prob_mean"].sum()
        ),
        atol=0.05,
    )
    assert np.allclose(table["share_of_budget"], reference["selected"].sum() / budget, atol=5e-5)
    assert np.allclose(
        table["share_of_district_selected"],
        reference["selected"].sum() / reference.size(),
        atol=5e-5,
    )
    assert table["people"].isna().all()
    import pyogrio

    assert [name for name, _ in pyogrio.list_layers(layers["folder"] / "cells30.gpkg")] == [
        "cells30"
    ]
    assert len(allocation) == 4 and not warnings


def test_people_budget_ranked_by_expected_poor_matches_pandas(layers):
    summary, cells, allocation, warnings = run_target(
        layers,
        "people",
        budget=9000,
        budget_unit="people",
        rank_by="expected_poor",
        population_path=layers["population"],
    )
    eligible = cells["prob_mean"].notna() & (cells["population"] > 0)
    ordered = reference_ranking(cells, "expected_poor", eligible)
    assert list(cells.loc[ordered.index, "rank"]) == list(range(1, eligible.sum() + 1))
    chosen = reference_selection(ordered, cells["population"], 9000)
    assert set(cells.index[cells["selected"] == 1]) == chosen
    assert np.allclose(
        cells["expected_poor"].fillna(-1),
        (cells["prob_mean"] * cells["population"]).fillna(-1),
        rtol=1e-6,
    )
    selected = cells[cells["selected"] == 1]
    assert selected["population"].sum() <= 9000
    assert selected["population"].sum() > 9000 - eligible.sum()  # spent: no small cell left over
    assert summary["selected_people"] == pytest.approx(selected["population"].sum(), rel=1e-6)
    poor = (cells["prob_mean"] * cells["population"]).sum()
    coverage = (selected["prob_mean"] * selected["population"]).sum() / poor
    assert summary["expected"]["coverage"] == pytest.approx(coverage, rel=1e-6)
    assert summary["expected"]["inclusion_error"] == pytest.approx(
        1 - (selected["prob_mean"] * selected["population"]).sum() / selected["population"].sum(),
        rel=1e-6,
    )
    # zero-population cells (the two western columns) are never ranked nor selected
    empty = cells["population"] == 0
    assert empty.sum() >= ROWS * 2
    assert (cells.loc[empty, "selected"] == 0).all() and cells.loc[empty, "rank"].isna().all()
    people = pandas.DataFrame(allocation).set_index("district")
    assert all(value.isdigit() for value in people["people"])  # whole people in the CSV
    totals = cells.assign(district=cells["district"].fillna("(no district)")).groupby("district")
    assert np.allclose(
        people["people_selected"].astype(float),
        totals[["selected", "population"]].apply(
            lambda g: g.loc[g["selected"] == 1, "population"].sum()
        ),
        rtol=0,
        atol=0.5,
    )
    assert not warnings


def test_floors_and_caps_match_pandas_and_hold_per_district(layers):
    summary, cells, allocation, warnings = run_target(
        layers,
        "floors",
        budget=0.4,
        budget_unit="share_of_people",
        population_path=layers["population"],
        district_min_share=0.3,
        district_max_share=0.5,
    )
    eligible = cells["prob_mean"].notna() & (cells["population"] > 0)
    ordered = reference_ranking(cells, "probability", eligible)
    district = cells["district"].where(cells["district"].notna(), None)
    budget = 0.4 * cells["population"].sum()
    chosen = reference_selection(ordered, cells["population"], budget, district, 0.3, 0.5)
    assert set(cells.index[cells["selected"] == 1]) == chosen
    shares = cells.groupby("district")[["selected", "population"]].apply(
        lambda g: g.loc[g["selected"] == 1, "population"].sum() / g["population"].sum()
    )
    assert (shares >= 0.3 - 1e-9).all() and (shares <= 0.5 + 1e-9).all()
    assert summary["budget"]["in_units"] == pytest.approx(budget)
    # the floors and the cap both bind: without them one district would take more than half, one less than 30 %
    free = reference_selection(ordered, cells["population"], budget)
    unconstrained = (
        cells.assign(selected=cells.index.isin(free))
        .groupby("district")[["selected", "population"]]
        .apply(lambda g: g.loc[g["selected"], "population"].sum() / g["population"].sum())
    )
    assert unconstrained.max() > 0.5 and unconstrained.min() < 0.3
    table = pandas.DataFrame(allocation).set_index("district").astype(float, errors="ignore")
    assert np.allclose(
        table.loc[list(DISTRICTS), "share_of_district_selected"].astype(float),
        shares[list(DISTRICTS)],
        atol=5e-5,
    )
    # "unreachable" is said exactly when a cell that fits the rest of the budget was left out (by a cap)
    rest = budget - cells.loc[cells["selected"] == 1, "population"].sum()
    left_out = cells[eligible & (cells["selected"] == 0)]
    assert (left_out["population"] <= rest).any() == any("unreachable" in w for w in warnings)
    assert summary["budget"]["reachable"] == (not (left_out["population"] <= rest).any())


def test_measured_errors_and_curve_with_truth_match_pandas(layers):
    summary, cells, _, _ = run_target(
        layers, "with_truth", budget=0.25, budget_unit="share_of_cells", truth_path=layers["truth"]
    )
    truth = read_grid(layers["truth"])[["cell_id", "label"]]
    joined = cells.merge(truth, on="cell_id")
    joined = joined[joined["prob_mean"].notna()]
    selected = joined[joined["selected"] == 1]
    measured = summary["measured"]
    assert measured["truth_cells"] == len(joined)
    assert measured["measured"]["coverage"] == pytest.approx(
        selected["label"].sum() / joined["label"].sum()
    )
    assert measured["measured"]["inclusion_error"] == pytest.approx(1 - selected["label"].mean())
    assert measured["measured"]["exclusion_error"] == pytest.approx(
        1 - selected["label"].sum() / joined["label"].sum()
    )
    assert measured["expected_on_truth_cells"]["coverage"] == pytest.approx(
        selected["prob_mean"].sum() / joined["prob_mean"].sum()
    )
    ordered = joined.sort_values(
        ["prob_mean", "cell_id"], ascending=[False, True], kind="mergesort"
    )
    x, y = summary["curves"]["measured"]["model"]
    assert np.allclose(y, np.concatenate([[0], ordered["label"].cumsum() / ordered["label"].sum()]))
    # district targeting: whole districts by mean predicted probability, measured on the truth cells
    rate = (
        cells.assign(district=cells["district"].fillna("(no district)"))
        .groupby("district")["prob_mean"]
        .mean()
    )
    by_district = joined.assign(district=joined["district"].fillna("(no district)"))
    steps = by_district.groupby("district")["label"].sum()[rate.sort_values(ascending=False).index]
    dx, dy = summary["curves"]["measured"]["district"]
    assert np.allclose(dy, np.concatenate([[0], steps.cumsum() / steps.sum()]))
    # and by the survey's own poverty rate per district (what a programme with a survey would do)
    survey_rate = by_district.groupby("district")["label"].mean().sort_values(ascending=False)
    steps = by_district.groupby("district")["label"].sum()[survey_rate.index]
    sizes = by_district.groupby("district").size()[survey_rate.index]
    sx, sy = summary["curves"]["measured"]["district_survey"]
    assert np.allclose(sy, np.concatenate([[0], steps.cumsum() / steps.sum()]))
    assert np.allclose(sx, np.concatenate([[0], sizes.cumsum() / sizes.sum()]))
    assert "baseline" in summary["curves"]["measured"]


def test_report_opens_with_the_summary_and_embeds_the_curve(layers):
    summary, _, _, _ = run_target(
        layers,
        "report",
        budget=0.3,
        budget_unit="share_of_people",
        population_path=layers["population"],
        truth_path=layers["truth"],
        figures_folder=str(layers["folder"] / "figures"),
        report_path=str(layers["folder"] / "report.html"),
    )
    with open(summary["report"], encoding="utf-8") as handle:
        html = handle.read()
    first = html.index("<section")
    assert html.index("Summary", first) < html.index("Targeting curve", first)
    assert "inclusion error" in html and "Measured inclusion error" in html
    assert html.count("data:image/png;base64,") == 1
    assert f"{100 * summary['expected']['coverage']:.1f} %" in html


def test_edge_cases_budget_too_large_no_prediction_and_unreachable_caps(layers):
    summary, cells, _, warnings = run_target(layers, "all", budget=10_000, budget_unit="cells")
    predicted = cells["prob_mean"].notna()
    assert (cells.loc[predicted, "selected"] == 1).all()
    assert (cells.loc[~predicted, "selected"] == 0).all()
    assert cells.loc[~predicted, "expected_poor"].isna().all()
    assert any(w.startswith("BUDGET:") and "every rankable cell" in w for w in warnings)

    summary, cells, _, warnings = run_target(
        layers, "capped", budget=0.9, budget_unit="share_of_cells", district_max_share=0.2
    )
    named = cells["district"].notna()
    per_district = cells[named].groupby("district")["selected"].sum()
    caps = np.floor(0.2 * cells[named].groupby("district").size() + 1e-9)
    assert (per_district == caps).all()
    assert (cells.loc[~named & cells["prob_mean"].notna(), "selected"] == 1).all()
    assert summary["budget"]["reachable"] is False
    assert summary["selected_cells"] == caps.sum() + (~named & cells["prob_mean"].notna()).sum()
    assert any(w.startswith("DISTRICT_MAX_SHARE:") and "unreachable" in w for w in warnings)


def test_skip_out_of_range_leaves_flagged_cells_out(layers):
    _, cells, _, _ = run_target(
        layers, "skip", budget=1.0, budget_unit="share_of_cells", skip_out_of_range=True
    )
    flagged = cells["out_of_range"] == 1
    assert flagged.any()
    assert (cells.loc[flagged, "selected"] == 0).all() and cells.loc[flagged, "rank"].isna().all()
    assert (cells.loc[~flagged & cells["prob_mean"].notna(), "selected"] == 1).all()


def test_selection_style_is_stored_as_the_default(layers):
    from qgis.core import QgsVectorLayer

    run_target(layers, "styled", budget=5, budget_unit="cells")
    path = str(layers["folder"] / "styled.gpkg")
    styles = carried_styles(path, "styled")
    assert list(styles) == ["povmap selection"]
    assert 'attr="selected"' in styles["povmap selection"]
    layer = QgsVectorLayer(f"{path}|layername=styled", "styled", "ogr")  # as added by hand
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "selected"


@pytest.mark.parametrize(
    "settings, parameter, words",
    [
        ({"predictions_path": "not_predictions"}, "PREDICTIONS", "not a prediction layer"),
        ({"population_path": "population_elsewhere"}, "POPULATION", "does not overlap"),
        ({"budget": -5}, "BUDGET", "give a budget above 0"),
        ({"budget": 1.5, "budget_unit": "share_of_people"}, "BUDGET", "between 0 and 1"),
        ({"district_max_share": 1.2}, "DISTRICT_MAX_SHARE", "between 0 and 1"),
        (
            {"district_min_share": 0.3, "district_max_share": 0.2},
            "DISTRICT_MAX_SHARE",
            "below the floor",
        ),
        ({"budget_unit": "people", "population_path": None}, "POPULATION", "needs a population"),
        ({"budget_unit": "households"}, "BUDGET_UNIT", "not a budget unit"),
    ],
)
def test_bad_input_names_the_parameter_and_writes_nothing(layers, settings, parameter, words):
    from povmap_qgis.core.decision.targeting import TargetOptions, target

    folder = layers["folder"] / f"bad-{parameter}-{len(os.listdir(layers['folder']))}"
    folder.mkdir()
    options = {
        "predictions_path": layers["predictions"],
        "output_path": str(folder / "out.gpkg"),
        "allocation_path": str(folder / "allocation.csv"),
        "report_path": str(folder / "report.html"),
        "budget": 0.3,
        "budget_unit": "share_of_cells",
        "population_path": layers["population"],
    }
    for key, value in settings.items():
        options[key] = layers.get(value, value) if isinstance(value, str) else value
    with pytest.raises(PovmapInputError) as raised:
        target(TargetOptions(**options))
    assert raised.value.parameter == parameter and words in str(raised.value)
    assert str(raised.value).startswith(f"{parameter}:")
    assert os.listdir(folder) == []


def exact_people(polygons, population_path):
    """People of each polygon (in the raster's CRS) by exact pixel-area intersections: the
    independent reference for cell_population."""
    import rasterio
    import shapely

    with rasterio.open(population_path) as source:
        values = source.read(1).astype("float64")
        left, top = source.transform.c, source.transform.f
    exact = []
    for polygon in polygons:
        xmin, ymin, xmax, ymax = polygon.bounds
        columns = np.arange(int((xmin - left) / PIXEL_DEG), int((xmax - left) / PIXEL_DEG) + 1)
        rows = np.arange(int((top - ymax) / PIXEL_DEG), int((top - ymin) / PIXEL_DEG) + 1)
        row, column = [grid.ravel() for grid in np.meshgrid(rows, columns, indexing="ij")]
        pixels = shapely.box(
            left + column * PIXEL_DEG,
            top - (row + 1) * PIXEL_DEG,
            left + (column + 1) * PIXEL_DEG,
            top - row * PIXEL_DEG,
        )
        fraction = shapely.area(shapely.intersection(pixels, polygon)) / PIXEL_DEG**2
        exact.append(float((values[row, column] * fraction).sum()))
    return exact


def test_population_sums_agree_with_qgis_zonal_statistics(layers, qgis_processing):
    import processing

    from povmap_qgis.core.grid.population import cell_population

    cells = read_grid(layers["predictions"])
    ours, inside = cell_population(cells.geometry, layers["population"])
    assert (inside > 0.97).all()  # counted in sub-pixels: exact to about 1 %
    result = processing.run(
        "native:zonalstatisticsfb",
        {
            "INPUT": layers["predictions"],
            "INPUT_RASTER": layers["population"],
            "RASTER_BAND": 1,
            "COLUMN_PREFIX": "pop_",
            "STATISTICS": [0, 1, 2],  # count, sum, mean
            "OUTPUT": str(layers["folder"] / "zonal.gpkg"),
        },
    )
    zonal = read_grid(result["OUTPUT"]).set_index("cell_id").loc[cells["cell_id"]]
    qgis = zonal["pop_sum"].fillna(0).to_numpy()
    assert ours.sum() == pytest.approx(qgis.sum(), rel=0.01)
    # QGIS takes the pixels whose centre is in the cell, whole: 120 to 132 pixels for cells of 130.2 pixels'
    # area here, so its sums scatter by the boundary pixels; ours weights them by their area inside
    populated = (qgis > 300) & (np.arange(len(qgis)) % COLUMNS >= 4)  # away from the empty west
    assert populated.sum() > 100
    assert np.allclose(ours[populated], qgis[populated], rtol=0.15)
    assert np.median(np.abs(ours[populated] / qgis[populated] - 1)) < 0.03
    import shapely

    # the area QGIS works in: square degrees of the raster's CRS
    area_in_pixels = shapely.area(cells.to_crs("EPSG:4326").geometry.values) / PIXEL_DEG**2
    scaled = (
        zonal["pop_mean"].to_numpy() * area_in_pixels
    )  # QGIS's people per pixel over the cell's area
    assert np.allclose(ours[populated], scaled[populated], rtol=0.06)
    assert np.median(np.abs(ours[populated] / scaled[populated] - 1)) < 0.015
    assert (ours[qgis == 0] < 1).all()


def test_population_sums_weight_boundary_pixels_by_their_area_inside(layers):
    """Against the exact area of every pixel inside the cell (shapely intersections), for a few cells."""

    from povmap_qgis.core.grid.population import cell_population

    cells = read_grid(layers["predictions"]).iloc[[20, 64, 100, 143, 179]]
    ours, _ = cell_population(cells.geometry, layers["population"])
    exact = exact_people(cells.to_crs("EPSG:4326").geometry, layers["population"])
    np.testing.assert_allclose(ours, exact, rtol=0.01)


def test_target_through_qgis_process_names_enums_and_returns_the_numbers(layers):
    from conftest import run_qgis_process

    folder = layers["folder"]
    completed = run_qgis_process(
        "run",
        "povmap:target",
        "--",
        f"PREDICTIONS={layers['predictions']}",
        f"POPULATION={layers['population']}",
        "BUDGET_UNIT=share_of_people",
        "BUDGET=0.3",
        "RANK_BY=expected_poor",
        f"TRUTH={layers['truth']}",
        f"OUTPUT={folder / 'qp.gpkg'}",
        f"ALLOCATION={folder / 'qp.csv'}",
        f"REPORT={folder / 'qp.html'}",
    )
    results = dict(line.split(":\t", 1) for line in completed.stdout.splitlines() if ":\t" in line)
    cells = read_grid(folder / "qp.gpkg")
    selected = cells[cells["selected"] == 1]
    assert int(float(results["SELECTED_CELLS"])) == len(selected)
    assert float(results["SELECTED_PEOPLE"]) == pytest.approx(
        selected["population"].sum(), rel=1e-4
    )
    coverage = (selected["expected_poor"]).sum() / cells["expected_poor"].sum()
    assert float(results["EXPECTED_COVERAGE"]) == pytest.approx(coverage, rel=1e-4)
    assert float(results["EXPECTED_EXCLUSION_ERROR"]) == pytest.approx(1 - coverage, rel=1e-4)
    for key in ("MEASURED_COVERAGE", "MEASURED_INCLUSION_ERROR", "MEASURED_EXCLUSION_ERROR"):
        assert 0 < float(results[key]) < 1
    with open(folder / "qp.html", encoding="utf-8") as handle:
        html = handle.read()
    assert html.count("data:image/png;base64,") == 2  # the curve and the QGIS-rendered map
    assert (
        json.loads(
            __import__("pyogrio").read_info(folder / "qp.gpkg", layer="qp")["layer_metadata"][
                "povmap_targeting"
            ]
        )["rank_by"]
        == "expected_poor"
    )


def test_bad_budget_through_processing_names_the_parameter_and_writes_nothing(
    layers, povmap_provider
):
    from qgis_helpers import run_failing

    folder = layers["folder"] / "processing-bad"
    folder.mkdir()
    message = run_failing(
        "povmap:target",
        {
            "PREDICTIONS": layers["predictions"],
            "BUDGET_UNIT": "share_of_cells",
            "BUDGET": 1.5,
            "OUTPUT": str(folder / "out.gpkg"),
            "ALLOCATION": str(folder / "allocation.csv"),
            "REPORT": str(folder / "report.html"),
        },
    )
    assert "BUDGET: 1.5 is a share above 1" in message
    assert os.listdir(folder) == []
    message = run_failing(
        "povmap:target",
        {
            "PREDICTIONS": layers["predictions"],
            "BUDGET_UNIT": "households",
            "BUDGET": 10,
            "OUTPUT": str(folder / "out.gpkg"),
            "ALLOCATION": str(folder / "allocation.csv"),
            "REPORT": str(folder / "report.html"),
        },
    )
    assert "BUDGET_UNIT" in message and "share_of_people" in message
    assert os.listdir(folder) == []


def test_sample_population_raster_holds_the_generated_people_and_the_truth_is_recorded(
    tiny_sample,
):
    import geopandas
    import rasterio

    from povmap_qgis.core.grid.population import cell_population

    with open(
        os.path.join(tiny_sample, "synthetic_sample_metadata.json"), encoding="utf-8"
    ) as handle:
        metadata = json.load(handle)
    path = os.path.join(tiny_sample, "synthetic_population_3arcsec.tif")
    with rasterio.open(path) as source:
        assert source.crs.to_epsg() == 4326
        assert source.res[0] == pytest.approx(1 / 1200)
        total = float(source.read(1).astype("float64").sum())
    assert total == pytest.approx(metadata["counts"]["population"], rel=1e-4)
    truth = metadata["ground_truth_district"]
    assert truth["name"] == metadata["counts"]["unsurveyed_district"]
    assert 0 < truth["poor_people"] < truth["people"]
    assert 0 < truth["people_in_poor_cells"] < truth["people"]
    assert truth["poor_share"] == pytest.approx(truth["poor_people"] / truth["people"], abs=1e-4)
    # the raster's people inside the district's polygon are the people the generator counted there
    districts = geopandas.read_file(
        os.path.join(tiny_sample, "synthetic_districts.gpkg"), engine="pyogrio"
    )
    district = districts[districts["name"] == truth["name"]]
    people, _ = cell_population(district.geometry, path)
    assert people[0] == pytest.approx(truth["people"], rel=0.02)


def test_uncalibrated_probabilities_are_said_to_be_so(layers):
    from povmap_qgis.core.geopackage import write_layer

    uncalibrated = read_grid(layers["predictions"]).drop(columns=["prob_raw"])
    path = str(layers["folder"] / "uncalibrated.gpkg")
    write_layer(uncalibrated, path)
    summary, _, _, warnings = run_target(
        {**layers, "predictions": path}, "uncalibrated_target", budget=5, budget_unit="cells"
    )
    assert summary["data"]["calibrated"] is False
    assert any("not calibrated" in warning for warning in warnings)
    # prob_raw written, but the package had no calibration (predict records method none)
    path = str(layers["folder"] / "uncalibrated_raw.gpkg")
    write_layer(
        read_grid(layers["predictions"]),
        path,
        metadata={"povmap_calibration": json.dumps({"method": "none"})},
    )
    summary, _, _, warnings = run_target(
        {**layers, "predictions": path}, "uncalibrated_raw_target", budget=5, budget_unit="cells"
    )
    assert summary["data"]["calibrated"] is False and warnings


# --- predictions on a grid of your own (ID_FIELD) ------------------------------------------------------


@pytest.fixture(scope="module")
def own_grid(layers):
    """The same squares and predictions as ``layers``, as a grid of one's own would carry them: rows
    shuffled, no cell_id, ids ``village_no`` that follow neither povmap's ids nor the row order; the
    truth labels the same places by village_no. ``village_of``: povmap cell_id -> village_no."""
    from povmap_qgis.core.geopackage import povmap_layer_metadata, write_layer
    from povmap_qgis.paths import style_path

    folder = layers["folder"]
    predictions = read_grid(layers["predictions"]).sample(frac=1.0, random_state=8)
    rng = np.random.default_rng(5)
    villages = 310_000 + 17 * rng.permutation(len(predictions))
    village_of = dict(zip(predictions["cell_id"], villages, strict=True))
    own = predictions.drop(columns=["cell_id"]).assign(village_no=villages).reset_index(drop=True)
    metadata = povmap_layer_metadata(layers["predictions"], "predictions")
    paths = {"village_of": village_of, "predictions": str(folder / "own_predictions.gpkg")}
    recorded = {key.replace("povmap:", "povmap_"): value for key, value in metadata.items()}
    write_layer(
        own,
        paths["predictions"],
        style_path("prediction_class"),
        "povmap prediction (class)",
        metadata=dict(recorded, povmap_id_field="village_no"),  # as Predict poverty writes it
    )
    paths["predictions_unrecorded"] = str(folder / "own_predictions_edited.gpkg")
    own.to_file(paths["predictions_unrecorded"], engine="pyogrio")  # e.g. saved by another tool
    truth = read_grid(layers["truth"])
    truth["village_no"] = truth["cell_id"].map(village_of)
    paths["truth"] = str(folder / "own_truth.gpkg")
    truth.drop(columns=["cell_id"]).sample(frac=1.0, random_state=2).to_file(
        paths["truth"], engine="pyogrio"
    )
    return paths


def test_predictions_on_an_own_grid_select_the_same_places_as_povmap_ids(layers, own_grid):
    """Own ids read from the layer's metadata (no ID_FIELD given): the same places are ranked,
    selected and counted as on povmap's cell_ids, with floors, caps, people and a truth; the
    selection follows a pandas ranking on village_no; the outputs carry village_no."""
    import pyogrio

    settings = {
        "budget": 0.35,
        "budget_unit": "share_of_people",
        "rank_by": "expected_poor",
        "population_path": layers["population"],
        "district_min_share": 0.2,
        "district_max_share": 0.5,
    }
    povmap, povmap_cells, povmap_allocation, _ = run_target(
        layers, "povmap_ids", truth_path=layers["truth"], **settings
    )
    report = str(layers["folder"] / "own_ids.html")
    own, cells, allocation, _ = run_target(
        {**layers, "predictions": own_grid["predictions"]},
        "own_ids",
        truth_path=own_grid["truth"],
        report_path=report,
        **settings,
    )
    assert "village_no" in cells and "cell_id" not in cells
    assert own["settings"]["id_field"] == "village_no"
    # the same places: povmap's cells renamed by village_of, in the own layer's row order
    by_village = povmap_cells.assign(
        village_no=povmap_cells["cell_id"].map(own_grid["village_of"])
    ).set_index("village_no")
    by_village = by_village.loc[cells["village_no"]]
    assert set(cells.loc[cells["selected"] == 1, "village_no"]) == set(
        by_village.index[by_village["selected"] == 1]
    )
    assert 40 < own["selected_cells"] == povmap["selected_cells"] < len(cells)
    np.testing.assert_allclose(cells["population"], by_village["population"], rtol=1e-9)
    assert cells["rank"].fillna(0).tolist() == by_village["rank"].fillna(0).tolist()
    for part in ("expected", "budget"):
        assert own[part] == pytest.approx(povmap[part]), part
    assert own["measured"]["measured"] == pytest.approx(povmap["measured"]["measured"])
    assert own["measured"]["truth_cells"] == povmap["measured"]["truth_cells"] > 50
    # (the interval columns are empty: these layers have no prob_low/prob_high)
    own_table = pandas.DataFrame(allocation).set_index("district").replace("", np.nan).astype(float)
    povmap_table = (
        pandas.DataFrame(povmap_allocation).set_index("district").replace("", np.nan).astype(float)
    )
    pandas.testing.assert_frame_equal(own_table, povmap_table, rtol=1e-9)
    # independently: pandas ranks by expected poor, then probability, then village_no
    eligible = cells["prob_mean"].notna() & (cells["population"] > 0)
    ordered = reference_ranking(cells, "expected_poor", eligible, id_field="village_no")
    assert list(cells.loc[ordered.index, "rank"]) == list(range(1, eligible.sum() + 1))
    district = cells["district"].where(cells["district"].notna(), None)
    budget = 0.35 * cells["population"].sum()
    chosen = reference_selection(ordered, cells["population"], budget, district, 0.2, 0.5)
    assert set(cells.index[cells["selected"] == 1]) == chosen
    spent = cells.loc[cells["selected"] == 1, "population"].sum()
    assert own["selected_people"] == pytest.approx(spent) and spent <= budget
    metadata = pyogrio.read_info(layers["folder"] / "own_ids.gpkg", layer="own_ids")
    assert metadata["layer_metadata"]["povmap_id_field"] == "village_no"
    with open(report, encoding="utf-8") as handle:
        assert "village_no" in handle.read()


def test_ties_on_an_own_grid_are_broken_by_its_id(layers, own_grid):
    """Probabilities rounded to 0.01 tie: the own grid's selection follows pandas with village_no
    as the tie-break, and holds the same probabilities as the selection on povmap's ids."""
    settings = {"budget": 0.3, "budget_unit": "share_of_cells"}
    _, povmap_cells, _, _ = run_target(layers, "povmap_ties", **settings)
    own, cells, _, _ = run_target(
        {**layers, "predictions": own_grid["predictions"]}, "own_ties", **settings
    )
    predicted = cells["prob_mean"].notna()
    ordered = reference_ranking(cells, "probability", predicted, id_field="village_no")
    assert list(cells.loc[ordered.index, "rank"]) == list(range(1, predicted.sum() + 1))
    budget = int(np.floor(0.3 * len(cells)))
    assert set(cells.index[cells["selected"] == 1]) == set(ordered.index[:budget])
    boundary = ordered["prob_mean"].iloc[budget - 1]
    assert ordered["prob_mean"].iloc[budget] == boundary  # a tie across the budget: the id decides
    assert sorted(cells.loc[cells["selected"] == 1, "prob_mean"]) == sorted(
        povmap_cells.loc[povmap_cells["selected"] == 1, "prob_mean"]
    )


def test_an_own_grid_through_qgis_process_with_id_field(layers, own_grid):
    """A layer that lost Predict poverty's metadata (saved by another tool): ID_FIELD=village_no
    gives the numbers of the povmap ids; without it the run stops naming the parameter."""
    from conftest import run_qgis_process

    folder = layers["folder"]
    povmap, _, _, _ = run_target(
        layers,
        "qp_povmap",
        budget=0.3,
        budget_unit="share_of_people",
        rank_by="expected_poor",
        population_path=layers["population"],
        truth_path=layers["truth"],
    )
    arguments = [
        f"PREDICTIONS={own_grid['predictions_unrecorded']}",
        f"POPULATION={layers['population']}",
        "BUDGET_UNIT=share_of_people",
        "BUDGET=0.3",
        "RANK_BY=expected_poor",
        f"TRUTH={own_grid['truth']}",
        f"OUTPUT={folder / 'qp_own.gpkg'}",
        f"ALLOCATION={folder / 'qp_own.csv'}",
        f"REPORT={folder / 'qp_own.html'}",
    ]
    failed = run_qgis_process("run", "povmap:target", "--", *arguments, check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "Cell id field — ID_FIELD: the layer" in said and "has no cell_id field" in said, said
    assert "village_no" in said and "Cell id field (ID_FIELD)" in said
    assert not os.path.exists(folder / "qp_own.gpkg") and not os.path.exists(folder / "qp_own.csv")
    completed = run_qgis_process("run", "povmap:target", "--", *arguments, "ID_FIELD=village_no")
    results = dict(line.split(":\t", 1) for line in completed.stdout.splitlines() if ":\t" in line)
    assert int(float(results["SELECTED_CELLS"])) == povmap["selected_cells"]
    assert float(results["SELECTED_PEOPLE"]) == pytest.approx(povmap["selected_people"], rel=1e-6)
    assert float(results["MEASURED_COVERAGE"]) == pytest.approx(
        povmap["measured"]["measured"]["coverage"], rel=1e-6
    )
    cells = read_grid(folder / "qp_own.gpkg")
    chosen = {
        own_grid["village_of"][cell]
        for cell in read_grid(folder / "qp_povmap.gpkg").query("selected == 1")["cell_id"]
    }
    assert set(cells.loc[cells["selected"] == 1, "village_no"]) == chosen


@pytest.mark.parametrize(
    "case, parameter, words",
    [
        ("no such field", "ID_FIELD", ["has no village field", "choose the id field"]),
        ("povmap id gone", "ID_FIELD", ["has no cell_id field", "Cell id field (ID_FIELD)"]),
        ("recorded id gone", "ID_FIELD", ["recorded village_no", "the field is gone"]),
        ("repeated ids", "ID_FIELD", ["share 1 village_no(s)", "its own village_no"]),
        ("truth without the id", "TRUTH", ["has no village_no field", "ID_FIELD"]),
        ("truth of other ids", "TRUTH", ["no labelled cell of TRUTH has the village_no"]),
    ],
)
def test_bad_own_grid_ids_name_the_parameter_and_write_nothing(
    layers, own_grid, case, parameter, words
):
    from povmap_qgis.core.decision.targeting import TargetOptions, target
    from povmap_qgis.core.geopackage import write_layer

    folder = layers["folder"] / f"bad-own-{case.replace(' ', '-')}"
    folder.mkdir()
    options = {
        "predictions_path": own_grid["predictions"],
        "output_path": str(folder / "out.gpkg"),
        "allocation_path": str(folder / "allocation.csv"),
        "report_path": str(folder / "report.html"),
        "budget": 0.3,
    }
    own = read_grid(own_grid["predictions"])
    if case == "no such field":
        options["id_field"] = "village"
    elif case == "povmap id gone":
        options["predictions_path"] = own_grid["predictions_unrecorded"]
    elif case == "recorded id gone":
        options["predictions_path"] = str(folder / "renamed.gpkg")
        write_layer(
            own.rename(columns={"village_no": "village"}),
            options["predictions_path"],
            metadata={"povmap_id_field": "village_no"},
        )
    elif case == "repeated ids":
        own.loc[1, "village_no"] = own.loc[0, "village_no"]
        options["predictions_path"] = str(folder / "repeated.gpkg")
        write_layer(own, options["predictions_path"], metadata={"povmap_id_field": "village_no"})
    elif case == "truth without the id":
        options["truth_path"] = layers["truth"]  # labelled by povmap's cell_id
    elif case == "truth of other ids":
        truth = read_grid(own_grid["truth"])
        truth["village_no"] = truth["village_no"] + 1  # ids of no predicted cell
        options["truth_path"] = str(folder / "truth.gpkg")
        truth.to_file(options["truth_path"], engine="pyogrio")
    before = set(os.listdir(folder))
    with pytest.raises(PovmapInputError) as raised:
        target(TargetOptions(**options))
    message = str(raised.value)
    assert raised.value.parameter == parameter, message
    assert all(word in message for word in words), message
    assert set(os.listdir(folder)) == before


def test_population_of_polygons_that_are_not_squares_weights_pixels_by_area(layers):
    """An own grid of hexagons (of two sizes, their bounding boxes overlapping): each polygon's
    people against the exact area of every pixel inside it (shapely intersections), and the
    polygons share no one."""
    import geopandas
    import shapely

    from povmap_qgis.core.grid.population import cell_population, windowed_cell_population

    def hexagon(x, y, radius):
        angles = np.radians(np.arange(0, 360, 60))
        return shapely.Polygon(np.c_[x + radius * np.cos(angles), y + radius * np.sin(angles)])

    radius = 700.0
    centres = [
        (X0 + 4000 + 1.5 * radius * i, Y0 + 3000 + np.sqrt(3) * radius * (j + 0.5 * (i % 2)))
        for i in range(5)
        for j in range(4)
    ]
    polygons = [hexagon(x, y, radius) for x, y in centres]
    polygons.append(hexagon(X0 + 12500, Y0 + 9500, 350.0))  # a smaller one
    frame = geopandas.GeoDataFrame(geometry=polygons, crs="EPSG:32642")
    boxes = shapely.box(*np.array([polygon.bounds for polygon in polygons]).T)
    assert shapely.area(shapely.intersection(boxes[0], boxes[4])) > 0  # chips would overlap
    ours, inside = cell_population(frame.geometry, layers["population"])
    assert (inside > 0.97).all()
    # read window by window (a country's layer, vectors.WINDOW_CELLS): the same numbers
    windows = lambda: (frame.geometry.iloc[i : i + 4] for i in range(0, len(frame), 4))  # noqa: E731
    windowed, windowed_inside = windowed_cell_population(windows, len(frame), layers["population"])
    np.testing.assert_array_equal(windowed, ours)
    np.testing.assert_array_equal(windowed_inside, inside)
    exact = exact_people(frame.to_crs("EPSG:4326").geometry, layers["population"])
    np.testing.assert_allclose(ours, exact, rtol=0.01)
    # the tiling's people once: the union's exact count equals the sum over the polygons
    union = frame.to_crs("EPSG:4326").geometry.iloc[:-1].union_all()
    whole, _ = cell_population(geopandas.GeoSeries([union], crs="EPSG:4326"), layers["population"])
    assert ours[:-1].sum() == pytest.approx(whole[0], rel=0.005)


def test_expected_numbers_get_intervals_from_prob_low_and_prob_high(layers):
    """The per-cell intervals aggregated as intervals.total_interval documents it, written out with
    pandas and scipy: bounds summed (a district's cells share the calibration's error) and the
    labels' sampling error z² Σ p(1 − p) added in quadrature; the coverage's bounds with the
    selected and the other cells moving in opposite directions."""
    import json as json_module

    from scipy.stats import norm

    from povmap_qgis.core.geopackage import write_layer

    base = read_grid(layers["predictions"])
    probability = base["prob_mean"]
    base["prob_low"] = (probability - 0.1).clip(lower=0)
    base["prob_high"] = (probability + 0.15).clip(upper=1)
    path = str(layers["folder"] / "with_intervals.gpkg")
    write_layer(
        base,
        path,
        None,
        "povmap prediction (class)",
        metadata={"povmap_interval": json_module.dumps({"method": "x", "nominal": 0.8})},
    )
    summary, cells, allocation, _ = run_target(
        dict(layers, predictions=path), "intervals", budget=0.3, budget_unit="share_of_cells"
    )
    z = norm.ppf(0.9)
    predicted = cells[cells["prob_mean"].notna()]

    def bounds(group):
        p = group["prob_mean"]
        sampling = z * z * (p * (1 - p)).sum()
        total = p.sum()
        return (
            max(0, total - np.sqrt((total - group["prob_low"].sum()) ** 2 + sampling)),
            min(len(group), total + np.sqrt((group["prob_high"].sum() - total) ** 2 + sampling)),
        )

    chosen, rest = predicted[predicted["selected"] == 1], predicted[predicted["selected"] == 0]
    expected = summary["expected"]
    assert expected["interval_nominal"] == 0.8
    assert expected["poor_covered_interval"] == pytest.approx(bounds(chosen))
    assert expected["poor_total_interval"] == pytest.approx(bounds(predicted))
    (chosen_low, chosen_high), (rest_low, rest_high) = bounds(chosen), bounds(rest)
    assert expected["coverage_interval"] == pytest.approx(
        [chosen_low / (chosen_low + rest_high), chosen_high / (chosen_high + rest_low)]
    )
    assert (
        expected["coverage_interval"][0] < expected["coverage"] < expected["coverage_interval"][1]
    )
    by_district = predicted.assign(district=predicted["district"].fillna("(no district)"))
    for row in allocation:
        group = by_district[by_district["district"] == row["district"]]
        for key, cells_counted in (
            ("expected_poor", group),
            ("expected_poor_covered", group[group["selected"] == 1]),
        ):
            low, high = bounds(cells_counted)
            assert float(row[f"{key}_low"]) == pytest.approx(low, abs=0.05)
            assert float(row[f"{key}_high"]) == pytest.approx(high, abs=0.05)
    from povmap_qgis.core.decision.targeting_report import report_document

    document = report_document(summary)
    from povmap_qgis.core.report.page import KeyValues

    items = [
        value
        for section in document["sections"]
        for block in section.blocks
        if isinstance(block, KeyValues)
        for _, value in block.items
    ]
    assert any("80 % interval" in str(value) for value in items)


def test_a_budget_for_every_cell_reports_whole_shares_through_processing(layers, povmap_provider):
    """Every predicted cell enrolled: coverage 1 and exclusion error 0 in the results, not
    0.9999999999999994 (float noise of the sums); the allocation's people are whole."""
    from qgis_helpers import run_algorithm

    folder = layers["folder"] / "processing-all"
    folder.mkdir()
    results, _ = run_algorithm(
        "povmap:target",
        {
            "PREDICTIONS": layers["predictions"],
            "POPULATION": layers["population"],
            "BUDGET_UNIT": "share_of_people",
            "BUDGET": 1.0,
            "OUTPUT": str(folder / "out.gpkg"),
            "ALLOCATION": str(folder / "allocation.csv"),
            "REPORT": str(folder / "report.html"),
        },
    )
    assert results["EXPECTED_COVERAGE"] == 1.0 and results["EXPECTED_EXCLUSION_ERROR"] == 0.0
    assert str(results["EXPECTED_EXCLUSION_ERROR"]) == "0.0"  # not -0.0 (it was -2.2e-16)
    table = pandas.read_csv(folder / "allocation.csv", dtype=str)
    assert all(value.isdigit() for value in table["people"].dropna())


def test_a_layer_read_in_windows_of_a_few_cells_gives_the_same_outputs(layers, monkeypatch):
    """A country's polygons are read window by window (vectors.WINDOW_CELLS); windows of 7
    cells — districts, people and empty ranks across their edges — give the OUTPUT layer, the
    allocation, the summary and the district outlines of one window."""
    import geopandas

    from povmap_qgis.core import vectors
    from povmap_qgis.core.grid.population import cell_population

    settings = {
        "budget": 0.3,
        "budget_unit": "share_of_people",
        "rank_by": "expected_poor",
        "population_path": layers["population"],
        "district_min_share": 0.1,
    }
    folder = layers["folder"]
    once = run_target(layers, "once", figures_folder=str(folder / "once_figures"), **settings)
    monkeypatch.setattr(vectors, "WINDOW_CELLS", 7)
    windows = run_target(
        layers, "windows", figures_folder=str(folder / "windows_figures"), **settings
    )
    (summary, cells, allocation, warnings), (summary_w, cells_w, allocation_w, warnings_w) = (
        once,
        windows,
    )
    assert len(cells) == ROWS * COLUMNS > 7 * 20
    assert list(cells_w.columns) == list(cells.columns)
    assert cells_w.geometry.equals(cells.geometry)
    pandas.testing.assert_frame_equal(
        cells_w.drop(columns="geometry"), cells.drop(columns="geometry")
    )
    assert cells["rank"].isna().any() and cells["selected"].sum() > 0
    # the people per cell are those of every polygon summed at once
    polygons = geopandas.read_file(layers["predictions"], engine="pyogrio")
    people, _ = cell_population(polygons.geometry, layers["population"])
    np.testing.assert_allclose(cells_w["population"], people, rtol=1e-12)
    assert allocation_w == allocation and warnings_w == warnings
    for key in ("budget", "expected", "selected_cells", "selected_people", "allocation"):
        assert summary_w[key] == summary[key], key
    outlines, outlines_w = (
        geopandas.read_file(figures["districts"], engine="pyogrio").set_index("district")
        for figures in (summary["figures"], summary_w["figures"])
    )
    assert sorted(outlines_w.index) == sorted(outlines.index)
    assert outlines_w.loc[outlines.index].area.to_numpy() == pytest.approx(
        outlines.area.to_numpy(), rel=1e-9
    )
    assert outlines_w.loc[outlines.index].geom_type.tolist() == outlines.geom_type.tolist()
