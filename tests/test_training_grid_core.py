"""povmap_qgis.core.grid.training_grid: cleaning, aggregation, privacy, bad input (no QGIS)."""

import os

import numpy as np
import pandas
import pyogrio
import pytest
import shapely
from helpers import carried_styles, read_grid, square, write_points, write_polygons
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.grid import cells
from povmap_qgis.core.grid.training_grid import TrainingGridOptions, build_training_grid
from povmap_qgis.core.progress import RecordingReporter
from povmap_qgis.paths import style_path

UTM = "EPSG:32642"


def households_with_known_cells(rng, n_cells=40, size=1000.0):
    """Households in known 1 km cells of UTM 42N, with known medians."""
    rows = rng.integers(2800, 2830, n_cells)
    cols = rng.integers(600, 640, n_cells)
    unique = sorted(set(zip(rows.tolist(), cols.tolist(), strict=True)))
    x, y, score, expected = [], [], [], {}
    for index, (row, col) in enumerate(unique):
        count = 1 + index % 9  # 1..9 households: some under MIN_OBS
        scores = rng.integers(1, 60, count)
        x.extend((col + rng.uniform(0.01, 0.99, count)) * size)
        y.extend((row + rng.uniform(0.01, 0.99, count)) * size)
        score.extend(scores)
        expected[int(cells.encode_cell_ids(row, col))] = (count, float(np.median(scores)))
    return np.array(x), np.array(y), np.array(score), expected


def test_cells_have_the_known_counts_and_medians(tmp_path):
    x, y, score, expected = households_with_known_cells(np.random.default_rng(3))
    points = write_points(tmp_path / "households.gpkg", x, y, UTM, score=score)
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "grid.gpkg"),
            crs=UTM,
        )
    )
    grid = read_grid(tmp_path / "grid.gpkg")
    kept = {cell: value for cell, value in expected.items() if value[0] >= 3}
    assert set(grid["cell_id"]) == set(kept)
    for row in grid.itertuples():
        assert (row.n_obs, row.median_score) == kept[row.cell_id]
        assert row.label == int(row.median_score < 19)
        # the polygon is the aligned 1 km square of the id
        r, c = cells.decode_cell_ids(row.cell_id)
        assert row.geometry.equals(square(c * 1000.0, r * 1000.0, 1000.0))
    assert counts["cells_kept"] == len(kept)
    assert counts["cells_under_min_obs"] == len(expected) - len(kept)
    assert counts["poor_cells"] == int((grid["median_score"] < 19).sum())


def test_geographic_points_match_a_pandas_reference_in_utm(tmp_path):
    rng = np.random.default_rng(7)
    lon, lat = 68.2 + rng.random(6000) * 0.25, 25.1 + rng.random(6000) * 0.2
    score = rng.integers(1, 70, 6000)
    points = write_points(tmp_path / "gps.gpkg", lon, lat, "EPSG:4326", score=score)
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "grid.gpkg"),
            max_obs=0,
        ),
        reporter,
    )
    assert counts["crs"] == UTM  # the UTM zone of 68.3° E
    assert any("EPSG:32642" in message for message in reporter.infos)

    x, y = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    reference = pandas.DataFrame(
        {
            "row": np.floor(y / 1000).astype(int),
            "col": np.floor(x / 1000).astype(int),
            "score": score,
        }
    )
    reference = reference.groupby(["row", "col"])["score"].agg(["size", "median"]).reset_index()
    reference = reference[reference["size"] >= 3]
    reference["cell_id"] = cells.encode_cell_ids(reference["row"], reference["col"])
    grid = read_grid(tmp_path / "grid.gpkg").merge(
        reference, on="cell_id", how="outer", indicator=True
    )
    assert (grid["_merge"] == "both").all()
    assert (grid["n_obs"] == grid["size"]).all()
    assert np.allclose(grid["median_score"], grid["median"])


def test_cleaning_rules_drop_and_count_each_household_once(tmp_path):
    # 10 households in one cell, one per rule, plus survivors.
    x = 600500.0 + np.arange(10)
    y = np.full(10, 2800500.0)
    score = np.array([0, 30, 30, 30, 30, 10, 12, 14, 16, 40], dtype=float)
    accuracy = np.array([5, 50, 5, 5, 5, 5, 5, 5, np.nan, 5])
    dates = [
        "2016-05-01",
        "2016-05-01",
        "2015-12-31",
        "2016-05-01",
        "2016-05-01",
        "2016-05-01",
        "2016-01-01",
        "2017-02-02",
        "2016-05-01",
        "2016-05-01",
    ]
    points = write_points(
        tmp_path / "survey.gpkg",
        x,
        y,
        UTM,
        score=score,
        acc=accuracy,
        when=pandas.to_datetime(dates),
    )
    urban = write_polygons(
        tmp_path / "urban.gpkg",
        [shapely.box(600502.5, 2800000, 600503.5, 2801000)],
        UTM,
        name=["town"],
    )
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "grid.gpkg"),
            crs=UTM,
            accuracy_field="acc",
            max_accuracy=20,
            date_field="when",
            min_date="2016-01-01",
            urban_path=str(urban),
        )
    )
    assert counts["dropped_zero"] == 1  # household 0
    assert counts["dropped_inaccurate"] == 2  # 50 m and unknown accuracy
    assert counts["dropped_too_early"] == 1  # 2015-12-31; 2016-01-01 itself is kept
    assert counts["dropped_urban"] == 1  # x = 600503 lies in the urban square
    assert counts["points_kept"] == 5
    grid = read_grid(tmp_path / "grid.gpkg")
    assert grid["n_obs"].tolist() == [5] and grid["median_score"].tolist() == [14.0]


@pytest.mark.parametrize(
    "poor_below, median, label",
    [
        (True, 18.5, 1),
        (True, 19.0, 0),
        (True, 19.5, 0),
        (False, 19.0, 0),
        (False, 19.5, 1),
        (False, 18.0, 0),
    ],
)
def test_label_direction_and_cutoff_boundary(tmp_path, poor_below, median, label):
    scores = [median - 1, median, median + 1]
    points = write_points(
        tmp_path / "p.gpkg", [600100.0, 600200, 600300], [2800100.0] * 3, UTM, score=scores
    )
    build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            crs=UTM,
            poor_below=poor_below,
        )
    )
    assert read_grid(tmp_path / "g.gpkg")["label"].tolist() == [label]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    min_obs=st.integers(3, 8), max_obs=st.sampled_from([0, 6, 9, 12]), seed=st.integers(0, 10_000)
)
def test_no_output_cell_has_fewer_than_min_obs_or_reaches_max_obs(tmp_path, min_obs, max_obs, seed):
    if max_obs and max_obs <= min_obs:
        return
    rng = np.random.default_rng(seed)
    x, y = 600000 + rng.random(800) * 8000, 2800000 + rng.random(800) * 8000
    points = write_points(tmp_path / f"p{seed}.gpkg", x, y, UTM, score=rng.integers(1, 50, 800))
    output = tmp_path / f"g{seed}-{min_obs}-{max_obs}.gpkg"
    try:
        counts = build_training_grid(
            TrainingGridOptions(
                points_path=str(points),
                score_field="score",
                output_path=str(output),
                crs=UTM,
                min_obs=min_obs,
                max_obs=max_obs,
            )
        )
    except PovmapInputError as error:
        assert error.parameter == "MIN_OBS" and not output.exists()
        return
    grid = read_grid(output)
    assert grid["n_obs"].min() >= min_obs
    if max_obs:
        assert grid["n_obs"].max() < max_obs
    assert counts["cells_kept"] == len(grid)


def test_household_points_are_never_written(tmp_path):
    x, y, score, _ = households_with_known_cells(np.random.default_rng(5))
    points = write_points(tmp_path / "households.gpkg", x, y, UTM, score=score)
    output = tmp_path / "grid.gpkg"
    build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(output),
            crs=UTM,
            style_qml_path=style_path("training_grid"),
        )
    )
    layers = dict(pyogrio.list_layers(output))
    assert layers == {"grid": "Polygon"}
    assert list(carried_styles(str(output))) == ["povmap training grid"]
    assert list(pyogrio.read_info(output, layer="grid")["fields"]) == [
        "cell_id",
        "district",
        "n_obs",
        "median_score",
        "label",
    ]
    assert sorted(os.listdir(tmp_path)) == ["grid.gpkg", "grid.qml", "households.gpkg"]


def test_districts_majority_outside_counted_and_layers_in_other_crs(tmp_path):
    # One cell split between districts A (west 30 %) and B; 2 households in A, 4 in B, 1 outside both.
    x = np.array([600100, 600200, 600500, 600600, 600700, 600800, 600900.0])
    y = np.full(7, 2800500.0)
    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    points = write_points(
        tmp_path / "p.gpkg", lon, lat, "EPSG:4326", score=[10, 10, 30, 30, 30, 30, 30]
    )
    # districts in Web Mercator, a third CRS
    to_mercator = Transformer.from_crs(UTM, "EPSG:3857", always_xy=True)
    import shapely

    west = shapely.ops.transform(
        to_mercator.transform, shapely.box(599000, 2799000, 600300, 2802000)
    )
    east = shapely.ops.transform(
        to_mercator.transform, shapely.box(600300, 2799000, 600850, 2802000)
    )
    districts = write_polygons(tmp_path / "d.gpkg", [west, east], "EPSG:3857", name=["A", "B"])
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            crs=UTM,
            districts_path=str(districts),
            district_field="name",
        ),
        reporter,
    )
    assert counts["dropped_outside_districts"] == 1
    assert any("outside every polygon of DISTRICTS" in warning for warning in reporter.warnings)
    grid = read_grid(tmp_path / "g.gpkg")
    assert grid["district"].tolist() == ["B"] and grid["n_obs"].tolist() == [6]


def test_invalid_district_polygon_is_repaired_and_named(tmp_path):
    import shapely

    bowtie = shapely.Polygon(
        [(600000, 2800000), (601000, 2801000), (601000, 2800000), (600000, 2801000)]
    )
    assert not bowtie.is_valid
    districts = write_polygons(tmp_path / "d.gpkg", [bowtie], UTM, name=["Bow"])
    points = write_points(
        tmp_path / "p.gpkg",
        [600100, 600100, 600100],
        [2800400, 2800500, 2800600],
        UTM,
        score=[5, 6, 7],
    )
    reporter = RecordingReporter()
    build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            crs=UTM,
            districts_path=str(districts),
            district_field="name",
        ),
        reporter,
    )
    assert any("DISTRICTS: repaired 1 invalid polygon" in warning for warning in reporter.warnings)
    assert read_grid(tmp_path / "g.gpkg")["district"].tolist() == ["Bow"]


def test_points_spanning_utm_zones_use_the_centre_zone_and_say_so(tmp_path):
    lon = np.repeat([65.5, 66.5, 67.5, 68.5], 3)  # zones 41 and 42
    lat = np.full(12, 25.0)
    points = write_points(tmp_path / "p.gpkg", lon, lat, "EPSG:4326", score=np.arange(1, 13))
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points), score_field="score", output_path=str(tmp_path / "g.gpkg")
        ),
        reporter,
    )
    assert counts["crs"] in ("EPSG:32641", "EPSG:32642")
    assert any("span UTM zones 41–42" in message for message in reporter.infos)
    assert counts["cells_kept"] == 4


def test_null_scores_are_skipped_and_counted(tmp_path):
    points = write_points(
        tmp_path / "p.gpkg",
        [600100.0] * 5,
        [2800100.0] * 5,
        UTM,
        score=[1.0, np.nan, 3.0, np.nan, 5.0],
    )
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(points),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            crs=UTM,
        ),
        reporter,
    )
    assert counts["dropped_null_score"] == 2 and counts["cells_kept"] == 1
    assert any("no value in SCORE_FIELD" in warning for warning in reporter.warnings)


def bad(tmp_path, expected_parameter, expected_text, **overrides):
    points = tmp_path / "p.gpkg"
    if not points.exists():
        write_points(
            points,
            [600100.0] * 4,
            [2800100.0] * 4,
            UTM,
            score=[1, 2, 3, 4],
            name=["a", "b", "c", "d"],
        )
    options = {
        "points_path": str(points),
        "score_field": "score",
        "output_path": str(tmp_path / "out.gpkg"),
        "crs": UTM,
    }
    options.update(overrides)
    with pytest.raises(PovmapInputError) as caught:
        build_training_grid(TrainingGridOptions(**options))
    assert caught.value.parameter == expected_parameter
    assert expected_text in str(caught.value)
    assert not os.path.exists(options["output_path"]) or options["output_path"].endswith(
        "existing.gpkg"
    )
    assert not [
        name
        for name in os.listdir(os.path.dirname(options["output_path"]) or ".")
        if ".partial-" in name
    ]
    return caught.value


def test_bad_input_messages_name_the_parameter(tmp_path):
    bad(tmp_path, "SCORE_FIELD", "'wealth' is not in the layer", score_field="wealth")
    bad(tmp_path, "SCORE_FIELD", "not numeric", score_field="name")
    bad(tmp_path, "CELL_SIZE", "positive", cell_size=0)
    bad(tmp_path, "CELL_SIZE", "positive", cell_size=-5)
    bad(tmp_path, "MIN_OBS", "at least 3", min_obs=0)
    bad(tmp_path, "CRS", "not a projected CRS", crs="EPSG:4326")
    bad(tmp_path, "MIN_DATE", "not a date", date_field="name", min_date="yesterday")
    bad(tmp_path, "INPUT", "no household is left", accuracy_field="score", max_accuracy=0.5)
    bad(tmp_path, "MIN_OBS", "no cell has at least 5", min_obs=5)


def test_wrong_geometry_and_empty_layers(tmp_path):
    polygons = write_polygons(tmp_path / "poly.gpkg", [square(600000, 2800000, 10)], UTM, score=[3])
    bad(tmp_path, "INPUT", "has Polygon geometries", points_path=str(polygons))
    import geopandas

    geopandas.GeoDataFrame(
        {"score": []}, geometry=geopandas.GeoSeries([], crs=UTM).set_crs(UTM)
    ).to_file(tmp_path / "empty.gpkg", engine="pyogrio")
    bad(tmp_path, "INPUT", "is empty", points_path=str(tmp_path / "empty.gpkg"))


def test_failed_run_keeps_an_existing_output_intact(tmp_path):
    existing = tmp_path / "existing.gpkg"
    existing.write_bytes(b"precious")
    bad(tmp_path, "MIN_OBS", "no cell", output_path=str(existing), min_obs=50)
    assert existing.read_bytes() == b"precious"


def _lonlat_survey(tmp_path, name, swap, n=400):
    """Households of the synthetic 1 km cells, in EPSG:4326, optionally with lat/lon swapped."""
    rng = np.random.default_rng(2)
    x, y, score, _ = households_with_known_cells(rng, n_cells=60)
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(x, y)
    first, second = (lat, lon) if swap else (lon, lat)
    return write_points(tmp_path / f"{name}.gpkg", first, second, "EPSG:4326", score=score)


def _district_around(tmp_path):
    """One district covering the synthetic cells (UTM 42N rows 2800-2830, cols 600-640)."""
    return write_polygons(
        tmp_path / "districts.gpkg",
        [shapely.box(595_000, 2_795_000, 645_000, 2_835_000)],
        UTM,
        name=["Sukkur"],
    )


def test_swapped_latitude_and_longitude_are_refused_naming_input_and_the_districts(tmp_path):
    options = {
        "score_field": "score",
        "min_obs": 3,
        "districts_path": str(_district_around(tmp_path)),
        "district_field": "name",
    }
    swapped = _lonlat_survey(tmp_path, "swapped", swap=True)
    with pytest.raises(PovmapInputError) as caught:
        build_training_grid(
            TrainingGridOptions(
                points_path=str(swapped), output_path=str(tmp_path / "g.gpkg"), **options
            )
        )
    message = str(caught.value)
    assert caught.value.parameter == "INPUT"
    assert "0% of the household points fall in the extent of DISTRICTS" in message
    assert "100% would with their two coordinates swapped" in message
    assert not os.path.exists(tmp_path / "g.gpkg")
    # the same households the right way round: no complaint, every household kept
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(_lonlat_survey(tmp_path, "right", swap=False)),
            output_path=str(tmp_path / "right.gpkg"),
            **options,
        ),
        reporter,
    )
    assert counts["dropped_outside_districts"] == 0
    assert not any("swapped" in message for message in reporter.warnings)


def test_swapped_coordinates_without_districts_are_refused_against_the_crs_given(tmp_path):
    swapped = _lonlat_survey(tmp_path, "swapped", swap=True)
    options = {"score_field": "score", "crs": UTM, "min_obs": 3}
    with pytest.raises(PovmapInputError) as caught:
        build_training_grid(
            TrainingGridOptions(
                points_path=str(swapped), output_path=str(tmp_path / "g.gpkg"), **options
            )
        )
    message = str(caught.value)
    assert message.startswith("INPUT: only 0% of the household points fall in the area of use")
    assert "EPSG:32642 (longitude 66° to 72°, latitude 0° to 84°)" in message
    assert "check CRS" in message and not os.path.exists(tmp_path / "g.gpkg")
    right = RecordingReporter()
    build_training_grid(
        TrainingGridOptions(
            points_path=str(_lonlat_survey(tmp_path, "right", swap=False)),
            output_path=str(tmp_path / "right.gpkg"),
            **options,
        ),
        right,
    )
    assert not any("swapped" in message for message in right.warnings)


def test_a_partly_swapped_layer_is_warned_about_and_its_right_points_kept(tmp_path):
    """A layer where a minority of rows are right and most swapped: a warning, not a refusal."""
    swapped = pyogrio.read_dataframe(_lonlat_survey(tmp_path, "swapped", swap=True))
    right = pyogrio.read_dataframe(_lonlat_survey(tmp_path, "right", swap=False))
    mixed = pandas.concat([right.iloc[: len(right) // 5], swapped.iloc[len(right) // 5 :]])
    pyogrio.write_dataframe(mixed, tmp_path / "mixed.gpkg")
    reporter = RecordingReporter()
    counts = build_training_grid(
        TrainingGridOptions(
            points_path=str(tmp_path / "mixed.gpkg"),
            score_field="score",
            output_path=str(tmp_path / "g.gpkg"),
            min_obs=3,
            districts_path=str(_district_around(tmp_path)),
            district_field="name",
        ),
        reporter,
    )
    warned = [message for message in reporter.warnings if "swapped" in message]
    assert len(warned) == 1 and warned[0].startswith("INPUT: only 20% of the household points")
    assert counts["points_kept"] == len(right) // 5


def test_a_few_points_swapped_among_many_right_ones_are_not_called_a_swapped_layer(tmp_path):
    from povmap_qgis.core.grid.survey_points import share_inside

    area = (66.0, 24.0, 72.0, 27.0)
    assert share_inside([68.0, 68.5, 25.1], [25.0, 25.5, 68.0], "EPSG:4326", area) == 2 / 3
    assert share_inside([25.0], [68.0], "EPSG:4326", area) == 0.0
    assert share_inside([95.0], [200.0], "EPSG:4326", area) == 0.0  # not a place at all


def test_one_household_at_0_0_does_not_move_the_utm_zone_and_is_named(tmp_path):
    """A classic data-entry error: the bounding box's centre would be in zone 36N; the median
    keeps zone 42N, the cells are those of the survey without it, and the warning names it."""
    rng = np.random.default_rng(2)
    x, y, score, _ = households_with_known_cells(rng, n_cells=60)
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(x, y)
    clean = write_points(tmp_path / "clean.gpkg", lon, lat, "EPSG:4326", score=score)
    typo = write_points(
        tmp_path / "typo.gpkg",
        np.r_[lon, 0.0],
        np.r_[lat, 0.0],
        "EPSG:4326",
        score=np.r_[score, score[0]],
    )
    grids = {}
    for name, path in (("clean", clean), ("typo", typo)):
        reporter = RecordingReporter()
        counts = build_training_grid(
            TrainingGridOptions(
                points_path=str(path),
                score_field="score",
                output_path=str(tmp_path / f"{name}.gpkg"),
                min_obs=3,
            ),
            reporter,
        )
        assert counts["crs"] == "EPSG:32642", reporter.infos
        grids[name] = (pyogrio.read_dataframe(tmp_path / f"{name}.gpkg"), reporter)
    clean_cells, typo_cells = (set(grids[key][0]["cell_id"]) for key in ("clean", "typo"))
    assert clean_cells == typo_cells  # the point's own cell has 1 household: under MIN_OBS
    far = [text for text in grids["typo"][1].warnings if "far from the others" in text]
    assert len(far) == 1 and f"feature #{len(x) + 1} (0.0°, 0.0°)" in far[0], far
    assert not [text for text in grids["clean"][1].warnings if "far from" in text]


@pytest.mark.parametrize(
    "crs, refused",
    [
        ("EPSG:32610", "is meant for longitude -126° to -120°"),
        ("EPSG:3857", "does not keep distances"),
    ],
)
def test_a_crs_that_does_not_suit_the_survey_is_refused(tmp_path, crs, refused):
    path = _lonlat_survey(tmp_path, "right", swap=False)
    with pytest.raises(PovmapInputError) as caught:
        build_training_grid(
            TrainingGridOptions(
                points_path=str(path),
                score_field="score",
                output_path=str(tmp_path / "g.gpkg"),
                min_obs=3,
                crs=crs,
            )
        )
    assert caught.value.parameter == "CRS" and refused in str(caught.value)
    assert not (tmp_path / "g.gpkg").exists()


def test_min_obs_counts_households_not_rows(tmp_path):
    """Duplicated rows (the same household read twice) do not make a cell publishable: cells
    of 2 real households stay out under MIN_OBS 3, counted against pandas."""
    rng = np.random.default_rng(24)
    x, y, score, _ = households_with_known_cells(rng, n_cells=60)
    # every household of the first cells read twice, as an export that repeated rows
    rows, cols = cells.cell_rows_cols(x, y, 1000.0)
    ids = cells.encode_cell_ids(rows, cols)
    twice = np.isin(ids, np.unique(ids)[:20])
    dx, dy, dscore = np.r_[x, x[twice]], np.r_[y, y[twice]], np.r_[score, score[twice]]
    household = np.r_[np.arange(len(x)), np.flatnonzero(twice)].astype(str)
    path = write_points(tmp_path / "dup.gpkg", dx, dy, UTM, score=dscore, hh=household)
    per_cell = pandas.DataFrame({"cell": ids}).groupby("cell").size()  # real households
    expected = per_cell[per_cell >= 3]
    for field in (None, "hh"):
        reporter = RecordingReporter()
        build_training_grid(
            TrainingGridOptions(
                points_path=str(path),
                score_field="score",
                output_path=str(tmp_path / f"g{field}.gpkg"),
                crs=UTM,
                min_obs=3,
                max_obs=0,
                household_field=field,
            ),
            reporter,
        )
        grid = pyogrio.read_dataframe(tmp_path / f"g{field}.gpkg").set_index("cell_id")
        assert sorted(grid.index) == sorted(expected.index)
        assert (grid["n_obs"] == expected.loc[grid.index]).all()
        assert any(f"{int(twice.sum())} row(s) repeat a household" in w for w in reporter.warnings)


def test_a_household_id_counts_one_household_whatever_its_rows_say(tmp_path):
    """Three rows of one household id at three positions of one cell are one household."""
    x = 600_500.0 + np.array([0.0, 10.0, 20.0, 0.0, 5.0, 9.0])
    y = np.full(6, 2_800_500.0)
    path = write_points(
        tmp_path / "ids.gpkg", x, y, UTM, score=[10.0, 11, 12, 30, 31, 32], hh=list("aaabcd")
    )
    options = {"score_field": "score", "crs": UTM, "min_obs": 3, "max_obs": 0}
    build_training_grid(
        TrainingGridOptions(
            points_path=str(path),
            output_path=str(tmp_path / "a.gpkg"),
            household_field="hh",
            **options,
        )
    )
    assert pyogrio.read_dataframe(tmp_path / "a.gpkg")["n_obs"].tolist() == [4]
    build_training_grid(
        TrainingGridOptions(points_path=str(path), output_path=str(tmp_path / "b.gpkg"), **options)
    )
    assert pyogrio.read_dataframe(tmp_path / "b.gpkg")["n_obs"].tolist() == [6]


@pytest.mark.parametrize("min_obs", [0, 1, 2])
def test_min_obs_below_three_is_refused_saying_why(tmp_path, min_obs):
    path = write_points(tmp_path / "p.gpkg", [600_500.0], [2_800_500.0], UTM, score=[1.0])
    with pytest.raises(PovmapInputError) as caught:
        build_training_grid(
            TrainingGridOptions(
                points_path=str(path),
                score_field="score",
                output_path=str(tmp_path / "g.gpkg"),
                min_obs=min_obs,
            )
        )
    assert caught.value.parameter == "MIN_OBS" and "at least 3" in str(caught.value)
    assert "work out the other's score" in str(caught.value)


@pytest.mark.parametrize("odd", [None, "empty", "missing", "z"])
def test_points_read_without_shapely_equal_geopandas_coordinates(tmp_path, odd):
    """read_points decodes plain 2D point WKB itself; any other layer goes through shapely.
    Either way the coordinates are geopandas' (NaN for an empty or missing point)."""
    import geopandas

    from povmap_qgis.core.vectors import read_points

    rng = np.random.default_rng(5)
    x, y = rng.uniform(66, 70, 500), rng.uniform(24, 28, 500)
    geometry = list(shapely.points(x, y))
    if odd == "empty":
        geometry[7] = shapely.Point()
    elif odd == "missing":
        geometry[7] = None
    elif odd == "z":
        geometry = list(shapely.points(x, y, np.ones(500)))
    path = str(tmp_path / "points.gpkg")
    geopandas.GeoDataFrame(
        {"score": rng.integers(1, 99, 500)}, geometry=geometry, crs="EPSG:4326"
    ).to_file(path, engine="pyogrio")
    found_x, found_y, table, crs = read_points(path, None, ["score"])
    expected = geopandas.read_file(path, engine="pyogrio")
    valid = ~(expected.geometry.isna() | expected.geometry.is_empty).to_numpy()
    np.testing.assert_array_equal(found_x[valid], expected.geometry.x.to_numpy()[valid])
    np.testing.assert_array_equal(found_y[valid], expected.geometry.y.to_numpy()[valid])
    assert np.isnan(found_x[~valid]).all() and (~valid).sum() == (odd in ("empty", "missing"))
    assert table["score"].tolist() == expected["score"].tolist()


def test_scores_far_outside_the_others_are_named_in_a_warning(tmp_path):
    """-50 and 1e308 among scores of 0-100: used (they are numbers), but said, naming
    SCORE_FIELD; an ordinary survey gets no such warning."""
    rng = np.random.default_rng(8)
    x, y, score, _ = households_with_known_cells(rng, n_cells=30)
    odd = np.asarray(score, dtype="float64").copy()
    odd[:2] = [-50.0, 1e308]
    warned = {}
    for name, values in (("plain", score), ("odd", odd)):
        path = write_points(tmp_path / f"{name}.gpkg", x, y, UTM, score=values)
        reporter = RecordingReporter()
        build_training_grid(
            TrainingGridOptions(
                points_path=str(path),
                score_field="score",
                output_path=str(tmp_path / f"g{name}.gpkg"),
                crs=UTM,
            ),
            reporter,
        )
        warned[name] = [text for text in reporter.warnings if text.startswith("SCORE_FIELD:")]
    assert warned["plain"] == []
    assert len(warned["odd"]) == 1 and "2 household(s)" in warned["odd"][0]
    assert "-50" in warned["odd"][0] and "1e+308" in warned["odd"][0]


def test_a_cutoff_that_is_not_finite_is_refused(tmp_path):
    path = write_points(tmp_path / "p.gpkg", [600_500.0], [2_800_500.0], UTM, score=[1.0])
    for cutoff in (float("nan"), float("inf")):
        with pytest.raises(PovmapInputError) as caught:
            build_training_grid(
                TrainingGridOptions(
                    points_path=str(path),
                    score_field="score",
                    output_path=str(tmp_path / "g.gpkg"),
                    cutoff=cutoff,
                )
            )
        assert caught.value.parameter == "CUTOFF"
