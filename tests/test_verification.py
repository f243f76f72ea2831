"""Field verification (core steps): the sample drawn (strata, weights, design record, the XLSForm
through pyxform), the returns read as ODK Central and KoBo export them, the estimates against an
independent pandas + samplics computation, the recalibrated package against scikit-learn, and every
refusal of bad returns."""

import json
import os
import shutil

import numpy as np
import pandas
import pyogrio
import pytest

from povmap_qgis.core.errors import PovmapInputError

ROWS, COLUMNS = 20, 25
X0, Y0, CELL = 600000.0, 2900000.0, 1000.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLES = os.path.join(ROOT, "resources", "styles")
BUNDLED_MODEL = os.path.join(ROOT, "models", "demo_compact.povmodel")


def prediction_frame(seed=1, selected=False):
    import geopandas
    import shapely

    rows, columns = np.divmod(np.arange(ROWS * COLUMNS), COLUMNS)
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=ROWS * COLUMNS)
    raw = 1 / (1 + np.exp(-latent))
    probability = 1 / (1 + np.exp(-(0.8 * latent - 0.3)))
    spread = 0.25 * rng.random(ROWS * COLUMNS)
    frame = geopandas.GeoDataFrame(
        {
            "cell_id": (rows + 2900) * 10**9 + columns + 600,
            "district": np.where(columns < 12, "Dadu", "Sanghar"),
            "prob_raw": raw,
            "prob_mean": probability,
            "prob_low": np.clip(probability - spread, 0, 1),
            "prob_high": np.clip(probability + spread, 0, 1),
            "pred": (probability > 0.42).astype("int32"),
            "chip_flagged": (np.arange(ROWS * COLUMNS) % 37 == 5).astype("int32"),
        },
        geometry=shapely.box(
            X0 + columns * CELL, Y0 + rows * CELL, X0 + (columns + 1) * CELL, Y0 + (rows + 1) * CELL
        ),
        crs="EPSG:32642",
    )
    frame.loc[[4, 90], "prob_mean"] = np.nan  # no prediction: never drawn
    if selected:
        order = np.argsort(-np.nan_to_num(frame["prob_mean"].to_numpy()))
        chosen = np.zeros(len(frame), "int32")
        chosen[order[:150]] = 1
        frame["selected"] = chosen
    return frame, latent


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )

    folder = tmp_path_factory.mktemp("verification")
    frame, latent = prediction_frame()
    predictions = str(folder / "predictions.gpkg")
    write_layer(frame, predictions)
    options = VerificationSampleOptions(
        predictions_path=predictions,
        output_path=str(folder / "sample.gpkg"),
        form_path=str(folder / "form.xlsx"),
        sample_size=90,
        seed=4,
        style_qml_path=os.path.join(STYLES, "verification_sample.qml"),
    )
    summary = verification_sample(options)
    truth = pandas.Series(
        (latent + np.random.default_rng(9).normal(0, 0.8, len(latent)) > 0.2).astype(int),
        index=frame["cell_id"],
    )
    return {
        "folder": folder,
        "predictions": predictions,
        "frame": frame,
        "options": options,
        "summary": summary,
        "truth": truth,
    }


def edit_geopackage(path, statements):
    """Edit a GeoPackage in place through GDAL (its triggers need GDAL's SQL functions)."""
    from osgeo import gdal

    dataset = gdal.OpenEx(path, gdal.OF_VECTOR | gdal.OF_UPDATE)
    for statement in statements:
        dataset.ExecuteSQL(statement)
    dataset = None


def design_of(path):
    from povmap_qgis.core.geopackage import povmap_layer_metadata

    name = os.path.splitext(os.path.basename(path))[0]
    return json.loads(povmap_layer_metadata(str(path), name)["povmap:verification_design"])


def read_sample(path):
    return pyogrio.read_dataframe(path, layer=os.path.splitext(os.path.basename(path))[0])


def test_sample_is_a_stratified_random_sample_with_its_design_recorded(drawn):

    frame, summary = drawn["frame"], drawn["summary"]
    sample = read_sample(drawn["options"].output_path)
    eligible = frame[frame["prob_mean"].notna() & (frame["chip_flagged"] == 0)]
    assert summary["cells"] == len(eligible) and summary["sampled"] == len(sample) == 90
    assert not set(sample["cell_id"]) - set(
        eligible["cell_id"]
    )  # flagged / unpredicted never drawn
    # strata recomputed with pandas: class x terciles of the interval's width within the class
    eligible = eligible.assign(width=eligible["prob_high"] - eligible["prob_low"])
    expected = {}
    for value, name in ((1, "poor"), (0, "not_poor")):
        part = eligible[eligible["pred"] == value]
        cuts = part["width"].quantile([1 / 3, 2 / 3]).to_numpy()
        terciles = np.select(
            [part["width"] <= cuts[0], part["width"] <= cuts[1]], ["narrow", "middle"], "wide"
        )
        for cell, tercile in zip(part["cell_id"], terciles, strict=True):
            expected[cell] = f"{name}_{tercile}"
    assert all(
        expected[cell] == stratum
        for cell, stratum in zip(sample["cell_id"], sample["stratum"], strict=True)
    )
    sizes = pandas.Series(expected).value_counts()
    drawn_per = sample["stratum"].value_counts()
    for _, row in sample.iterrows():
        assert row["weight"] == pytest.approx(sizes[row["stratum"]] / drawn_per[row["stratum"]])
        assert row["inclusion_probability"] == pytest.approx(1 / row["weight"])
    assert drawn_per.min() >= 5  # the minimum per stratum
    assert (
        pyogrio.list_layers(drawn["options"].output_path).shape[0] == 1
    )  # opens without a question
    record = design_of(drawn["options"].output_path)
    assert {row["stratum"]: row["cells"] for row in record["strata"]} == sizes.to_dict()
    assert record["seed"] == 4 and record["cells"] == len(eligible)
    assert record["map_poor_share"] == pytest.approx((eligible["pred"] == 1).mean())
    # centre latitude / longitude by pyproj, independently of geopandas
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32642", "EPSG:4326", always_xy=True).transform(
        X0 + ((sample["cell_id"] % 10**9) - 600 + 0.5) * CELL,
        Y0 + ((sample["cell_id"] // 10**9) - 2900 + 0.5) * CELL,
    )
    assert np.allclose(sample["lat"], lat, atol=1e-6) and np.allclose(sample["lon"], lon, atol=1e-6)
    assert sample["observed_poor"].isna().all() and sample["households_visited"].isna().all()


def test_same_seed_draws_the_same_cells_another_seed_others(drawn, tmp_path):
    from povmap_qgis.core.verification.verification_sample import verification_sample

    first = read_sample(drawn["options"].output_path)
    again = drawn["options"].__class__(
        **{
            **drawn["options"].__dict__,
            "output_path": str(tmp_path / "again.gpkg"),
            "form_path": None,
        }
    )
    verification_sample(again)
    other = drawn["options"].__class__(
        **{**again.__dict__, "output_path": str(tmp_path / "other.gpkg"), "seed": 5}
    )
    verification_sample(other)
    assert sorted(read_sample(again.output_path)["cell_id"]) == sorted(first["cell_id"])
    assert sorted(read_sample(other.output_path)["cell_id"]) != sorted(first["cell_id"])


def test_form_converts_with_pyxform_and_lists_the_sampled_cells(drawn):
    import openpyxl
    from pyxform.xls2xform import convert

    warnings = []
    result = convert(drawn["options"].form_path, warnings=warnings)
    assert not warnings, warnings
    assert "households_poor" in result.xform and "observed_poor" in result.xform
    choices = openpyxl.load_workbook(drawn["options"].form_path)["choices"]
    ids = [row[1] for row in choices.iter_rows(min_row=2, values_only=True) if row[0] == "cell"]
    assert sorted(map(int, ids)) == sorted(read_sample(drawn["options"].output_path)["cell_id"])


def test_targeting_output_is_stratified_by_selected_and_class(tmp_path):
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )

    frame, _ = prediction_frame(selected=True)
    write_layer(frame, str(tmp_path / "targeting.gpkg"))
    summary = verification_sample(
        VerificationSampleOptions(
            str(tmp_path / "targeting.gpkg"),
            str(tmp_path / "s.gpkg"),
            target_half_width=0.1,
            min_distance=1500,
        )
    )
    sample = read_sample(str(tmp_path / "s.gpkg"))
    assert summary["kind"] == "targeting"
    merged = sample.merge(
        frame[["cell_id", "selected", "pred"]], on="cell_id", suffixes=("", "_map")
    )
    names = np.char.add(
        np.where(merged["selected_map"] == 1, "selected_", "not_selected_"),
        np.where(merged["pred_map"] == 1, "poor", "not_poor"),
    )
    assert (merged["stratum"] == names).all()
    centres = np.column_stack([sample.geometry.centroid.x, sample.geometry.centroid.y])
    gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(sample), dtype=bool)].min() >= 1500


def kobo_returns(drawn, sample, skip=(), separator="/"):
    """A return per sampled cell as KoBo exports them (group prefix, _uuid, _submission_time)."""
    truth = drawn["truth"]
    observed = truth.loc[sample["cell_id"]].to_numpy()
    return pandas.DataFrame(
        {
            "start": "2026-03-01T08:00:00",
            f"visit{separator}cell_id": sample["cell_id"].astype(str),
            f"visit{separator}location": "26.2 70.1 0 5",
            f"visit{separator}visit_date": "2026-03-01",
            f"visit{separator}households_visited": 9,
            f"visit{separator}households_poor": np.where(observed == 1, 7, 2),
            f"visit{separator}observed_poor": np.where(observed == 1, "yes", "no"),
            "_uuid": [f"uuid-{i}" for i in range(len(sample))],
            "_submission_time": "2026-03-02T10:00:00",
        }
    ).drop(index=list(skip))


def run_results(drawn, name, **settings):
    from povmap_qgis.core.verification.verification_results import (
        VerificationResultsOptions,
        verification_results,
    )

    folder = drawn["folder"]
    options = VerificationResultsOptions(
        sample_path=drawn["options"].output_path,
        output_path=str(folder / f"{name}.gpkg"),
        metrics_path=str(folder / f"{name}.json"),
        report_path=str(folder / f"{name}.html"),
        style_qml_path=os.path.join(STYLES, "verification_outcome.qml"),
        **settings,
    )
    return verification_results(options), options


def test_kobo_csv_returns_give_the_independent_stratified_estimates(drawn):
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    sample = read_sample(drawn["options"].output_path)
    returns = kobo_returns(drawn, sample, skip=(0, 7))  # two cells not visited
    path = drawn["folder"] / "kobo.csv"
    returns.to_csv(path, index=False)
    summary, options = run_results(drawn, "kobo", returns_path=str(path))
    assert summary["visits"]["missing"] == sorted(sample["cell_id"].iloc[[0, 7]]) or set(
        summary["visits"]["missing"]
    ) == set(sample["cell_id"].iloc[[0, 7]])
    # independent: pandas join by id, weights N_h / visited_h, samplics' stratified ratio
    visited = sample.merge(
        returns.rename(columns={"visit/cell_id": "cid"}).assign(
            cid=lambda f: f["cid"].astype("int64")
        ),
        left_on="cell_id",
        right_on="cid",
    )
    observed = (visited["visit/observed_poor"] == "yes").astype(float).to_numpy()
    strata = pandas.DataFrame(design_of(options.sample_path)["strata"]).set_index("stratum")[
        "cells"
    ]
    counts = visited["stratum"].value_counts()
    weights = visited["stratum"].map(strata / counts).to_numpy()
    fpc = {name: 1 - counts[name] / strata[name] for name in sorted(counts.index)}
    predicted = visited["pred"].to_numpy(dtype=float)
    for key, (y, x) in {
        "users_accuracy_poor": (predicted * observed, predicted),
        "producers_accuracy_poor": (predicted * observed, observed),
        "poor_share": (observed, np.ones_like(observed)),
        "overall_accuracy": ((predicted == observed).astype(float), np.ones_like(observed)),
    }.items():
        reference = TaylorEstimator(PopParam.ratio)
        reference.estimate(
            y=y, x=x, samp_weight=weights, stratum=visited["stratum"].to_numpy(), fpc=fpc
        )
        assert summary[key]["estimate"] == pytest.approx(float(reference.point_est), rel=1e-9), key
        assert summary[key]["se"] == pytest.approx(float(reference.stderror), rel=1e-9), key
    margin = summary["random"]["precision_minus_random"]
    assert margin["estimate"] == pytest.approx(
        summary["users_accuracy_poor"]["estimate"] - summary["poor_share"]["estimate"]
    )
    assert margin["low"] < margin["estimate"] < margin["high"]
    metrics = json.load(open(options.metrics_path, encoding="utf-8"))
    for key in ("overall_accuracy", "users_accuracy_poor", "producers_accuracy_poor", "poor_share"):
        assert set(metrics[key]) >= {"estimate", "low", "high"}
    assert metrics["strata"] and os.path.isfile(os.path.splitext(options.metrics_path)[0] + ".csv")
    outcome = read_sample(options.output_path).set_index("cell_id")
    assert (outcome.loc[sample["cell_id"].iloc[[0, 7]], "outcome"] == "not_visited").all()
    seen = outcome.loc[visited["cell_id"]]
    expected = np.select(
        [(observed == 1) & (predicted == 1), observed == 1, predicted == 1],
        ["hit", "miss", "false_alarm"],
        "correct_rejection",
    )
    assert (seen["outcome"].to_numpy() == expected).all()
    html = open(options.report_path, encoding="utf-8").read()
    assert "The map&#x27;s poor cells were poor" in html or "The map's poor cells were poor" in html


def test_odk_central_xlsx_returns_with_dash_prefixes_read_alike(drawn):
    sample = read_sample(drawn["options"].output_path)
    csv_path, xlsx_path = drawn["folder"] / "odk.csv", drawn["folder"] / "odk.xlsx"
    kobo_returns(drawn, sample).to_csv(csv_path, index=False)
    odk = kobo_returns(drawn, sample, separator="-").rename(columns={"_uuid": "KEY"})
    odk["visit-observed_poor"] = ""  # derived from the counts: 7 of 9 poor -> poor
    odk.to_excel(xlsx_path, index=False)
    from_csv, _ = run_results(drawn, "from_csv", returns_path=str(csv_path))
    from_xlsx, _ = run_results(drawn, "from_xlsx", returns_path=str(xlsx_path))
    for key in ("overall_accuracy", "users_accuracy_poor", "poor_share"):
        assert from_csv[key] == from_xlsx[key]


def test_sample_edited_by_qfield_is_its_own_return(drawn, tmp_path):
    sample_path = str(tmp_path / "sample.gpkg")
    shutil.copy(drawn["options"].output_path, sample_path)
    sample = read_sample(sample_path)
    truth = drawn["truth"]
    edit_geopackage(  # what QField's form writes
        sample_path,
        [
            f"UPDATE sample SET observed_poor = {int(truth[cell])}, households_visited = 8, "
            f"households_poor = {6 if truth[cell] else 1} WHERE cell_id = {int(cell)}"
            for cell in sample["cell_id"]
        ],
    )
    summary, _ = run_results(
        {
            **drawn,
            "options": drawn["options"].__class__(
                **{**drawn["options"].__dict__, "output_path": sample_path}
            ),
        },
        "qfield",
    )
    assert summary["visits"]["visited"] == len(sample) and not summary["visits"]["missing"]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda f: f.drop(columns=["visit/cell_id"]), ["ID_FIELD", "no cell_id column"]),
        (
            lambda f: f.assign(**{"visit/cell_id": f["visit/cell_id"].where(f.index != 3, "123")}),
            ["not in the sample", "123"],
        ),
        (lambda f: pandas.concat([f, f.iloc[[5]]]), ["more than once", "uuid-5"]),
        (
            lambda f: f.assign(
                **{"visit/households_poor": f["visit/households_poor"].where(f.index != 2, 12)}
            ),
            ["more households judged poor", "12 poor of 9"],
        ),
        (
            lambda f: f.assign(
                **{"visit/observed_poor": f["visit/observed_poor"].where(f.index != 1, "maybe")}
            ),
            ["not yes/no", "maybe"],
        ),
    ],
    ids=["no_id_column", "unknown_id", "visit_twice", "counts_above_visited", "not_yes_no"],
)
def test_bad_returns_are_refused_naming_the_rows_nothing_written(drawn, edit, words):
    sample = read_sample(drawn["options"].output_path)
    path = drawn["folder"] / "bad.csv"
    edit(kobo_returns(drawn, sample)).to_csv(path, index=False)
    with pytest.raises(PovmapInputError) as error:
        run_results(drawn, "bad", returns_path=str(path))
    for word in words:
        assert word in str(error.value)
    assert not os.path.exists(drawn["folder"] / "bad.gpkg") and not os.path.exists(
        drawn["folder"] / "bad.json"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE sample SET weight = weight * 2 WHERE fid = 3",
        "UPDATE sample SET inclusion_probability = 0.5 WHERE fid = 4",
        "UPDATE sample SET stratum = 'poor_narrow' WHERE fid = "
        "(SELECT min(fid) FROM sample WHERE stratum = 'poor_wide')",
        "DELETE FROM sample WHERE fid = 5",
    ],
    ids=["weight", "inclusion_probability", "stratum", "cell_removed"],
)
def test_a_sample_whose_design_was_edited_is_refused(drawn, tmp_path, statement):
    sample_path = str(tmp_path / "sample.gpkg")
    shutil.copy(drawn["options"].output_path, sample_path)
    edit_geopackage(sample_path, [statement])
    with pytest.raises(PovmapInputError, match="SAMPLE: .*no longer matches the design"):
        run_results(
            {
                **drawn,
                "options": drawn["options"].__class__(
                    **{**drawn["options"].__dict__, "output_path": sample_path}
                ),
            },
            "edited",
        )


def test_too_few_visits_in_a_stratum_are_refused_naming_the_cells(drawn):
    sample = read_sample(drawn["options"].output_path)
    stratum = sample["stratum"].iloc[0]
    inside = np.flatnonzero(sample["stratum"] == stratum)
    path = drawn["folder"] / "few.csv"
    kobo_returns(drawn, sample, skip=inside[1:]).to_csv(path, index=False)
    with pytest.raises(PovmapInputError, match=f"RETURNS: too few visits.*{stratum}: 1 visited"):
        run_results(drawn, "few", returns_path=str(path))


def test_recalibrate_writes_a_new_package_fitted_like_scikit_learn(drawn):
    from sklearn.linear_model import LogisticRegression

    from povmap_qgis.core.model.model_package import MANIFEST, read_package

    sample = read_sample(drawn["options"].output_path)
    returns = kobo_returns(drawn, sample)
    path = drawn["folder"] / "all.csv"
    returns.to_csv(path, index=False)
    parent = drawn["folder"] / "parent.povmodel"
    shutil.copytree(BUNDLED_MODEL, parent)
    before = open(parent / MANIFEST, "rb").read()
    new = str(drawn["folder"] / "recalibrated.povmodel")
    summary, _ = run_results(
        drawn, "recal", returns_path=str(path), recalibrate_path=str(parent), new_model_path=new
    )
    assert open(parent / MANIFEST, "rb").read() == before  # the input is never changed
    manifest = read_package(new)
    observed = drawn["truth"].loc[sample["cell_id"]].to_numpy()
    raw = np.clip(sample["prob_raw"].to_numpy(), 1e-6, 1 - 1e-6)
    reference = LogisticRegression(C=1e6, max_iter=1000).fit(
        np.log(raw / (1 - raw)).reshape(-1, 1), observed, sample_weight=sample["weight"].to_numpy()
    )
    assert manifest["calibration"]["slope"] == pytest.approx(reference.coef_[0][0], rel=1e-4)
    assert manifest["calibration"]["intercept"] == pytest.approx(
        reference.intercept_[0], rel=1e-4, abs=1e-6
    )
    lineage = manifest["lineage"]
    assert lineage["recalibrated_from"] == str(parent) and lineage["visited_cells"] == len(sample)
    assert lineage["parent_manifest_sha256"] == json.loads(before)["manifest_sha256"]
    assert summary["new_model"]["path"] == new


def test_recalibrate_with_too_few_visits_says_how_many_are_needed(drawn):
    sample = read_sample(drawn["options"].output_path)
    keep = np.concatenate(
        [np.flatnonzero(sample["stratum"] == name)[:2] for name in sample["stratum"].unique()]
    )
    path = drawn["folder"] / "twelve.csv"
    kobo_returns(drawn, sample, skip=np.setdiff1d(np.arange(len(sample)), keep)).to_csv(
        path, index=False
    )
    new = drawn["folder"] / "never.povmodel"
    with pytest.raises(
        PovmapInputError, match=r"RECALIBRATE: 12 visited cells .*at least 30 .* 18 more visits"
    ):
        run_results(
            drawn,
            "few_recal",
            returns_path=str(path),
            recalibrate_path=BUNDLED_MODEL,
            new_model_path=str(new),
        )
    assert not new.exists()


def test_povmap_cell_ids_of_18_digits_are_matched_exactly():
    """cell_id encodes the CRS and the cell's row and column (500002826500000641): a float would
    round it to a neighbour's id."""
    from povmap_qgis.core.verification.returns import observations

    ids = [500002826500000641, 500002826500000640, 500002832500000639]
    frame = pandas.DataFrame(
        {"visit/cell_id": [str(cell) for cell in ids], "visit/observed_poor": ["yes", "no", "1"]}
    )
    assert observations(frame, ids, "cell_id", "observed_poor") == {
        500002826500000641: (1, None, None),
        500002826500000640: (0, None, None),
        500002832500000639: (1, None, None),
    }


def test_population_cells_with_nobody_never_drawn_and_poor_people_estimated(tmp_path, drawn):
    import rasterio

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )

    frame, _ = prediction_frame(seed=5)
    write_layer(frame, str(tmp_path / "predictions.gpkg"))
    people = np.full((ROWS * 10, COLUMNS * 10), 3.0, "float32")  # 100 m pixels, 300 people a cell
    people[:, : 8 * 10] = 0.0  # nobody in the 8 western columns
    with rasterio.open(
        tmp_path / "people.tif",
        "w",
        driver="GTiff",
        width=COLUMNS * 10,
        height=ROWS * 10,
        count=1,
        dtype="float32",
        crs="EPSG:32642",
        transform=rasterio.transform.from_origin(X0, Y0 + ROWS * CELL, 100, 100),
    ) as target:
        target.write(people, 1)
    summary = verification_sample(
        VerificationSampleOptions(
            str(tmp_path / "predictions.gpkg"),
            str(tmp_path / "s.gpkg"),
            population_path=str(tmp_path / "people.tif"),
            sample_size=60,
            seed=2,
        )
    )
    sample = read_sample(str(tmp_path / "s.gpkg"))
    columns = sample["cell_id"] % 10**9 - 600
    assert (columns >= 8).all() and summary["cells"] < len(frame)
    assert np.allclose(sample["population"], 300.0, rtol=1e-4)
    returns = kobo_returns(drawn, sample.assign(cell_id=sample["cell_id"]))
    returns["visit/observed_poor"] = np.where(sample["pred"] == 1, "yes", "no")
    returns.to_csv(tmp_path / "r.csv", index=False)
    results, _ = run_results(
        {
            **drawn,
            "options": VerificationSampleOptions(
                str(tmp_path / "predictions.gpkg"), str(tmp_path / "s.gpkg")
            ),
        },
        "people",
        returns_path=str(tmp_path / "r.csv"),
    )
    # equal people per cell: the people share is the cell share
    assert results["poor_people_share"]["estimate"] == pytest.approx(
        results["poor_share"]["estimate"]
    )
    assert results["users_accuracy_poor"]["estimate"] == 1.0  # observed = predicted


def test_targeting_sample_gives_inclusion_and_exclusion_errors(tmp_path, drawn):
    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.core.verification.estimators import targeting_estimates
    from povmap_qgis.core.verification.verification_sample import (
        VerificationSampleOptions,
        verification_sample,
    )

    frame, _ = prediction_frame(selected=True)
    write_layer(frame, str(tmp_path / "targeting.gpkg"))
    options = VerificationSampleOptions(
        str(tmp_path / "targeting.gpkg"), str(tmp_path / "t.gpkg"), sample_size=60
    )
    verification_sample(options)
    sample = read_sample(options.output_path)
    kobo_returns(drawn, sample).to_csv(tmp_path / "t.csv", index=False)
    results, _ = run_results(
        {**drawn, "options": options}, "targeting", returns_path=str(tmp_path / "t.csv")
    )
    observed = drawn["truth"].loc[sample["cell_id"]].to_numpy()
    sizes = {row["stratum"]: row["cells"] for row in design_of(options.output_path)["strata"]}
    expected = targeting_estimates(
        sample["stratum"].to_numpy(), sizes, sample["selected"], observed
    )
    for key in ("inclusion_error", "exclusion_error"):
        assert results[key]["estimate"] == pytest.approx(expected[key].estimate)
        assert results[key]["low"] < results[key]["estimate"] < results[key]["high"]


def test_new_model_over_the_package_to_recalibrate_is_refused(drawn):
    with pytest.raises(PovmapInputError, match="NEW_MODEL: is the package to recalibrate"):
        run_results(
            drawn, "same", recalibrate_path=BUNDLED_MODEL, new_model_path=BUNDLED_MODEL + "/"
        )
