"""povmap:districtestimates — small area estimation: the statistics against samplics (an independent
implementation of Fay–Herriot and of Taylor linearisation), a simulation from a known Fay–Herriot model,
the core step on written layers (edge cases, bad input named, nothing written), and a Processing run."""

import csv
import math
import os

import numpy as np
import pandas
import pytest

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.estimation import small_areas as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLE = os.path.join(ROOT, "resources", "styles", "district_estimates.qml")
CRS = "EPSG:32642"
X0, Y0 = 600000.0, 2900000.0
SIDE = 4  # districts are 4 × 4 km, 4 × 4 of them; cells 1 km
CELL = 1000.0


def samplics_fh(y, x, psi):
    """samplics' REML Fay–Herriot: (σ²u, β, SE(β), EBLUP, MSE) — the independent reference."""
    from samplics.sae import EblupAreaModel
    from samplics.utils.types import FitMethod

    area = np.arange(len(y))
    model = EblupAreaModel(FitMethod.reml)
    model.fit(
        yhat=y, X=x, area=area, error_std=np.sqrt(psi), intercept=True, tol=1e-13, maxiter=500
    )
    model.predict(X=x, area=area, intercept=True)
    return (
        model.re_std**2,
        model.fixed_effects,
        model.fe_std,
        np.array([model.area_est[a] for a in area]),
        np.array([model.area_mse[a] for a in area]),
    )


def ours(y, x, psi):
    design = np.column_stack([np.ones(len(y)), x])
    fit = sa.fit_fay_herriot(y, design, psi)
    predicted = sa.predict_fay_herriot(fit, y, design, psi, np.ones(len(y), bool))
    return fit, predicted


def test_fay_herriot_equals_samplics_on_the_milk_data():
    from samplics.datasets import load_expenditure_milk

    milk = load_expenditure_milk()["data"]
    y = milk["direct_est"].to_numpy(float)
    psi = milk["std_error"].to_numpy(float) ** 2
    regions = pandas.get_dummies(milk["major_area"], drop_first=True).to_numpy(float)
    sigma2, beta, beta_se, estimate, mse = samplics_fh(y, regions, psi)
    fit, predicted = ours(y, regions, psi)
    assert fit.converged and len(y) == 43
    assert fit.sigma2_u == pytest.approx(sigma2, abs=1e-6)
    assert fit.sigma2_u == pytest.approx(0.01855, abs=5e-6)  # sae::eblupFH's published value
    np.testing.assert_allclose(fit.beta, beta, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.beta_cov)), beta_se, atol=1e-6)
    np.testing.assert_allclose(predicted.estimate, estimate, atol=1e-6)
    np.testing.assert_allclose(predicted.mse, mse, atol=1e-6)


def test_fay_herriot_equals_samplics_on_a_simulated_case():
    rng = np.random.default_rng(2024)
    m = 80
    x = rng.uniform(0.1, 0.7, m)
    psi = rng.uniform(0.001, 0.01, m)
    y = 0.05 + 0.8 * x + rng.normal(0, math.sqrt(0.003), m) + rng.normal(0, np.sqrt(psi))
    sigma2, beta, beta_se, estimate, mse = samplics_fh(y, x[:, None], psi)
    fit, predicted = ours(y, x[:, None], psi)
    assert sigma2 > 0
    assert fit.sigma2_u == pytest.approx(sigma2, abs=1e-6)
    np.testing.assert_allclose(fit.beta, beta, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.beta_cov)), beta_se, atol=1e-6)
    np.testing.assert_allclose(predicted.estimate, estimate, atol=1e-6)
    np.testing.assert_allclose(predicted.mse, mse, atol=1e-6)


def test_direct_estimates_equal_samplics_taylor_on_a_clustered_weighted_survey():
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    rng = np.random.default_rng(7)
    strata = np.repeat(np.arange(5), 240)
    psu = np.repeat(np.arange(60), 20)  # 12 PSUs per stratum
    district = rng.integers(0, 8, len(psu))
    district[psu == 3] = 7  # a PSU wholly in one district
    poor = (rng.random(len(psu)) < 0.2 + 0.05 * district).astype(float)
    weights = rng.uniform(20, 300, len(psu))
    reference = TaylorEstimator(PopParam.mean)
    reference.estimate(y=poor, samp_weight=weights, stratum=strata, psu=psu, domain=district)
    direct = sa.direct_estimates(poor, weights, district, 8, psu, strata)
    for d in range(8):
        assert direct.estimate[d] == pytest.approx(reference.point_est[d], abs=1e-12)
        assert direct.variance[d] == pytest.approx(reference.variance[d], rel=1e-9)
    assert direct.households.sum() == len(psu)
    national = TaylorEstimator(PopParam.mean)
    national.estimate(y=poor, samp_weight=weights, stratum=strata, psu=psu)
    whole = sa.direct_estimates(poor, weights, np.zeros(len(psu), int), 1, psu, strata)
    assert whole.estimate[0] == pytest.approx(national.point_est, abs=1e-12)
    assert whole.variance[0] == pytest.approx(national.variance, rel=1e-9)


def simulate(rng, m=60, sigma2_u=0.004):
    x = rng.uniform(0.1, 0.6, m)
    psi = rng.uniform(0.0005, 0.008, m)
    theta = 0.05 + 0.9 * x + rng.normal(0, math.sqrt(sigma2_u), m)
    return x, psi, theta, theta + rng.normal(0, np.sqrt(psi))


def test_simulated_fay_herriot_intervals_cover_95_percent_and_beat_the_direct_estimates():
    """500 replications of a known Fay–Herriot model (60 districts each): the 95 % intervals of the
    EBLUP with the Prasad–Rao/Datta–Lahiri MSE cover the true values 93–97 % of the time; the
    estimates' mean squared error is below the direct estimates'; the mean MSE estimate tracks it."""
    rng = np.random.default_rng(12345)
    covered, total, squared_eblup, squared_direct, mse_sum = 0, 0, 0.0, 0.0, 0.0
    for _ in range(500):
        x, psi, theta, y = simulate(rng)
        fit, predicted = ours(y, x[:, None], psi)
        half = sa.Z95 * np.sqrt(predicted.mse)
        covered += int((np.abs(predicted.estimate - theta) <= half).sum())
        total += len(theta)
        squared_eblup += float(((predicted.estimate - theta) ** 2).sum())
        squared_direct += float(((y - theta) ** 2).sum())
        mse_sum += float(predicted.mse.sum())
    coverage = covered / total
    assert 0.93 <= coverage <= 0.97, coverage
    assert squared_eblup < 0.7 * squared_direct
    assert mse_sum / squared_eblup == pytest.approx(1.0, abs=0.1)


def test_synthetic_estimates_of_unsurveyed_districts_cover_their_truth():
    """Districts left out of the survey get x'β̂ with MSE σ²u + x'(X'V⁻¹X)⁻¹x: about 95 % coverage
    (measured 93.0 % over 7,500 intervals: the error of σ̂²u itself is not in that MSE, so a little under)."""
    rng = np.random.default_rng(99)
    covered, total = 0, 0
    for _ in range(500):
        x, psi, theta, y = simulate(rng, m=70)
        sampled = np.arange(70) < 55
        design = np.column_stack([np.ones(70), x])
        fit = sa.fit_fay_herriot(y[sampled], design[sampled], psi[sampled])
        predicted = sa.predict_fay_herriot(fit, y, design, psi, sampled)
        out = ~sampled
        assert (predicted.gamma[out] == 0).all()
        half = sa.Z95 * np.sqrt(predicted.mse[out])
        covered += int((np.abs(predicted.estimate[out] - theta[out]) <= half).sum())
        total += int(out.sum())
    assert 0.92 <= covered / total <= 0.97, covered / total


def test_bootstrap_mse_is_seeded_and_agrees_with_the_analytical_mse():
    rng = np.random.default_rng(5)
    x, psi, _, y = simulate(rng, m=50)
    design = np.column_stack([np.ones(50), x])
    fit = sa.fit_fay_herriot(y, design, psi)
    analytical = sa.predict_fay_herriot(fit, y, design, psi, np.ones(50, bool)).mse
    first = sa.bootstrap_mse(fit, design, psi, np.ones(50, bool), 400, seed=3)
    again = sa.bootstrap_mse(fit, design, psi, np.ones(50, bool), 400, seed=3)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first) / np.mean(analytical) == pytest.approx(1.0, abs=0.12)


def test_arcsin_back_transform_is_the_expectation_of_sin_squared_by_numerical_integration():
    from scipy import integrate, stats

    def expected(mean, variance):
        if variance == 0:
            return math.sin(min(max(mean, 0), math.pi / 2)) ** 2
        sd = math.sqrt(variance)
        inside = integrate.quad(
            lambda t: math.sin(t) ** 2 * stats.norm.pdf(t, mean, sd), 0, math.pi / 2
        )[0]
        return inside + stats.norm.sf(math.pi / 2, mean, sd)

    for mean, variance in ((0.5, 0.01), (0.05, 0.02), (1.5, 0.03), (0.9, 0.0), (-0.1, 0.05)):
        value = sa.sin_squared_expectation(np.array([mean]), np.array([variance]))[0]
        assert value == pytest.approx(expected(mean, variance), abs=1e-9)


def test_reml_at_zero_when_the_map_explains_everything():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.6, 30)
    psi = np.full(30, 0.01)
    y = 0.1 + 0.8 * x + rng.normal(0, 0.02, 30)  # residual variance far below psi
    fit = sa.fit_fay_herriot(y, np.column_stack([np.ones(30), x]), psi)
    assert fit.at_zero and fit.sigma2_u == 0.0
    predicted = sa.predict_fay_herriot(
        fit, y, np.column_stack([np.ones(30), x]), psi, np.ones(30, bool)
    )
    assert (predicted.gamma == 0).all()


def test_ratio_benchmark_makes_the_weighted_estimates_add_up_to_the_national_estimate():
    estimates = np.array([0.2, 0.4, np.nan, 0.3])
    sizes = np.array([100.0, 300.0, 50.0, 600.0])
    factor = sa.ratio_benchmark(estimates, sizes, 0.33)
    use = np.isfinite(estimates)
    assert np.sum(sizes[use] * estimates[use] * factor) / sizes[use].sum() == pytest.approx(0.33)


# --- the core step on written layers ---------------------------------------------------------------------


def district_names():
    return [f"D{index + 1:02d}" for index in range(SIDE * SIDE)]


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """16 districts of 16 cells; a clustered, weighted, stratified survey with every edge case:
    D16 unsurveyed (synthetic), D15 surveyed but without predicted cells, D14 one cluster,
    D13 all poor, D12 none poor; a population raster in EPSG:4326; an out-of-fold grid."""
    import geopandas
    import rasterio
    import shapely
    from pyproj import Transformer

    from povmap_qgis.core.geopackage import write_layer
    from povmap_qgis.paths import style_path

    folder = tmp_path_factory.mktemp("districts")
    rng = np.random.default_rng(31)
    names = district_names()
    index = np.arange(SIDE * SIDE)
    drow, dcol = np.divmod(index, SIDE)
    district_boxes = shapely.box(
        X0 + dcol * SIDE * CELL,
        Y0 + drow * SIDE * CELL,
        X0 + (dcol + 1) * SIDE * CELL,
        Y0 + (drow + 1) * SIDE * CELL,
    )
    rate = np.clip(0.15 + 0.045 * index + rng.normal(0, 0.04, len(index)), 0.05, 0.9)
    districts = geopandas.GeoDataFrame(
        {"name": names, "truth": rate}, geometry=district_boxes, crs=CRS
    )
    paths = {"folder": folder, "districts": str(folder / "districts.gpkg")}
    districts.to_file(paths["districts"], engine="pyogrio")

    cells_per_side = SIDE * SIDE
    rows, cols = np.divmod(np.arange(cells_per_side**2), cells_per_side)
    cell_district = (rows // SIDE) * SIDE + cols // SIDE
    probability = np.clip(rate[cell_district] + rng.normal(0, 0.08, len(rows)), 0.01, 0.99)
    keep = cell_district != 14  # D15: no predicted cells
    cell_ids = (rows + 2900) * 10**9 + (cols + 600)
    predictions = geopandas.GeoDataFrame(
        {
            "cell_id": cell_ids[keep],
            "district": np.array(names, dtype=object)[cell_district[keep]],
            "prob_mean": np.round(probability[keep], 4),
            "pred": (probability[keep] > 0.5).astype("int32"),
        },
        geometry=shapely.box(
            X0 + cols * CELL, Y0 + rows * CELL, X0 + (cols + 1) * CELL, Y0 + (rows + 1) * CELL
        )[keep],
        crs=CRS,
    )
    paths["predictions"] = str(folder / "predictions.gpkg")
    write_layer(
        predictions, paths["predictions"], style_path("prediction_class"), "povmap prediction"
    )
    oof = predictions[["cell_id", "geometry"]].copy()
    oof["prob_mean"] = np.where(np.arange(len(oof)) % 3 == 0, 0.9, np.nan)
    paths["out_of_fold"] = str(folder / "crossvalidation_grid.gpkg")
    oof.to_file(paths["out_of_fold"], engine="pyogrio")

    households = []
    for d in range(SIDE * SIDE):
        if d == 15:
            continue  # D16 unsurveyed
        clusters = 1 if d == 13 else int(rng.integers(3, 6))
        for c in range(clusters):
            cx = X0 + (d % SIDE) * SIDE * CELL + rng.uniform(300, SIDE * CELL - 300)
            cy = Y0 + (d // SIDE) * SIDE * CELL + rng.uniform(300, SIDE * CELL - 300)
            share = (
                1.0 if d == 12 else 0.0 if d == 11 else np.clip(rate[d] + rng.normal(0, 0.1), 0, 1)
            )
            for _ in range(int(rng.integers(8, 14))):
                poor = rng.random() < share
                households.append(
                    {
                        "x": cx + rng.normal(0, 60),
                        "y": cy + rng.normal(0, 60),
                        "score": float(rng.integers(3, 19) if poor else rng.integers(19, 60)),
                        "weight": float(rng.uniform(50, 400)),
                        "ea": f"ea-{d}-{c}",
                        "region": f"r{d // 4}",
                        "weight_text": "heavy",
                    }
                )
    table = pandas.DataFrame(households)
    survey = geopandas.GeoDataFrame(
        table.drop(columns=["x", "y"]),
        geometry=geopandas.points_from_xy(table["x"], table["y"]),
        crs=CRS,
    ).to_crs("EPSG:4326")  # the survey in another CRS than the districts
    paths["survey"] = str(folder / "survey.gpkg")
    survey.to_file(paths["survey"], engine="pyogrio")
    paths["survey_table"] = table

    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    west, south = to_lonlat.transform(X0 - 2000, Y0 - 2000)
    east, north = to_lonlat.transform(X0 + 18000, Y0 + 18000)
    pixel = 1 / 1200
    width, height = int((east - west) / pixel) + 1, int((north - south) / pixel) + 1
    lat = north - (np.arange(height) + 0.5) * pixel
    people = (1 + 8 * (np.sin(lat * 900) ** 2))[:, None] * rng.gamma(3, 1, (height, width))
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
        transform=rasterio.transform.from_origin(west, north, pixel, pixel),
    ) as target:
        target.write(people.astype("float32"), 1)
    paths["rate"] = dict(zip(names, rate, strict=True))
    return paths


def run_core(layers, name, **settings):
    from povmap_qgis.core.estimation.district_estimates import (
        DistrictEstimatesOptions,
        district_estimates,
    )
    from povmap_qgis.core.progress import RecordingReporter

    folder = layers["folder"]
    values = {
        "survey_path": layers["survey"],
        "score_field": "score",
        "districts_path": layers["districts"],
        "district_field": "name",
        "predictions_path": layers["predictions"],
        "output_path": str(folder / f"{name}.gpkg"),
        "table_path": str(folder / f"{name}.csv"),
        "weight_field": "weight",
        "cluster_field": "ea",
        "stratum_field": "region",
        "style_qml_path": STYLE,
    }
    values.update(settings)
    reporter = RecordingReporter()
    summary = district_estimates(DistrictEstimatesOptions(**values), reporter)
    import geopandas

    written = geopandas.read_file(values["output_path"], engine="pyogrio").set_index("district")
    with open(values["table_path"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return summary, written, rows, reporter.warnings


def reference_direct(layers):
    """samplics' Taylor estimates of the survey's districts (from the generated table, not the layer)."""
    from samplics.estimation import TaylorEstimator
    from samplics.utils.types import PopParam

    table = layers["survey_table"]
    district = (
        ((table["y"] - Y0) // (SIDE * CELL)).astype(int) * SIDE
        + ((table["x"] - X0) // (SIDE * CELL)).astype(int)
    ).map(lambda d: district_names()[d])
    # samplics cannot divide by a share of 0: D12 (none poor) and D13 (all poor) form one domain,
    # which changes no other district's estimate or variance
    district = district.replace({"D12": "D12+D13", "D13": "D12+D13"})
    estimator = TaylorEstimator(PopParam.mean)
    estimator.estimate(
        y=(table["score"] < 19).astype(float).to_numpy(),
        samp_weight=table["weight"].to_numpy(),
        stratum=pandas.factorize(table["region"])[0],
        psu=pandas.factorize(table["ea"])[0],
        domain=district.to_numpy(),
    )
    return estimator.point_est, estimator.variance


def reference_covariate(layers):
    import geopandas

    cells = geopandas.read_file(layers["predictions"], engine="pyogrio")
    districts = geopandas.read_file(layers["districts"], engine="pyogrio")
    centres = cells.assign(geometry=cells.geometry.representative_point())
    joined = geopandas.sjoin(centres, districts[["name", "geometry"]], predicate="within")
    return joined.groupby("name")["prob_mean"].mean()


def test_direct_estimates_and_model_through_the_layers_equal_samplics(layers):
    summary, written, rows, warnings = run_core(layers, "plain")
    point, variance = reference_direct(layers)
    reliable = [name for name in point if name not in ("D12+D13", "D14")]
    for name in reliable:
        assert written.loc[name, "direct"] == pytest.approx(point[name], abs=1e-9)
        assert written.loc[name, "direct_se"] == pytest.approx(math.sqrt(variance[name]), rel=1e-7)
        assert written.loc[name, "variance_smoothed"] == 0
    covariate = reference_covariate(layers)
    for name, value in covariate.items():
        assert written.loc[name, "covariate"] == pytest.approx(value, abs=1e-9)
    # the model: samplics on the modelled districts (surveyed and covered by the map)
    modelled = [name for name in district_names() if name not in ("D15", "D16")]
    y = written.loc[modelled, "direct"].to_numpy(float)
    psi = written.loc[modelled, "direct_se"].to_numpy(float) ** 2
    x = written.loc[modelled, "covariate"].to_numpy(float)[:, None]
    sigma2, beta, beta_se, estimate, mse = samplics_fh(y, x, psi)
    assert summary["model"]["sigma2_u"] == pytest.approx(sigma2, abs=1e-6)
    np.testing.assert_allclose(summary["model"]["beta"], beta, atol=1e-6)
    np.testing.assert_allclose(
        written.loc[modelled, "estimate"], np.clip(estimate, 0, 1), atol=1e-6
    )
    np.testing.assert_allclose(written.loc[modelled, "mse"], mse, atol=1e-6)
    # edge cases
    assert written.loc["D16", "in_sample"] == 0 and written.loc["D16", "households"] == 0
    assert written.loc["D16", "gamma"] == 0
    assert written.loc["D16", "estimate"] == pytest.approx(
        beta[0] + beta[1] * written.loc["D16", "covariate"], abs=1e-6
    )
    design = np.column_stack([np.ones(len(y)), x])
    beta_cov = np.linalg.inv(design.T @ (design / (sigma2 + psi)[:, None]))  # (X'V⁻¹X)⁻¹
    x16 = np.array([1.0, written.loc["D16", "covariate"]])
    assert written.loc["D16", "mse"] == pytest.approx(sigma2 + x16 @ beta_cov @ x16, abs=1e-6)
    assert pandas.isna(written.loc["D16", "direct"])
    assert written.loc["D14", "clusters"] == 1 and written.loc["D14", "variance_smoothed"] == 1
    assert written.loc["D13", "direct"] == 1.0 and written.loc["D13", "variance_smoothed"] == 1
    assert written.loc["D12", "direct"] == 0.0 and written.loc["D12", "variance_smoothed"] == 1
    assert written.loc["D15", "gamma"] == 1 and pandas.isna(written.loc["D15", "covariate"])
    assert written.loc["D15", "estimate"] == pytest.approx(written.loc["D15", "direct"])
    # publishable, intervals and CVs hang together; the CSV holds the same numbers
    assert ((written["cv"] <= 0.2) == (written["publishable"] == 1)).all()
    finite = written["estimate"].notna()
    np.testing.assert_allclose(
        written.loc[finite, "cv"], written.loc[finite, "se"] / written.loc[finite, "estimate"]
    )
    assert (written.loc[finite, "low"] <= written.loc[finite, "estimate"]).all()
    assert [row["district"] for row in rows] == district_names()
    assert float(rows[0]["estimate"]) == pytest.approx(written.loc["D01", "estimate"])
    assert summary["sampled_districts"] == 15 and summary["districts"] == 16
    assert summary["publishable_estimate"] == int(written["publishable"].sum())
    assert any("OUT_OF_FOLD" in message for message in warnings)


@pytest.mark.parametrize("window", [None, 7], ids=["one window", "windows of 7 cells"])
def test_population_weights_the_map_and_counts_the_poor(layers, window, monkeypatch):
    """Against geopandas' spatial join and the people of every polygon summed at once, also
    when the cells' polygons are read 7 at a time (vectors.WINDOW_CELLS: a country's)."""
    import geopandas

    from povmap_qgis.core import vectors
    from povmap_qgis.core.grid.population import cell_population

    if window:
        monkeypatch.setattr(vectors, "WINDOW_CELLS", window)
    summary, written, _, _ = run_core(
        layers, f"people_{window}", population_path=layers["population"]
    )
    cells = geopandas.read_file(layers["predictions"], engine="pyogrio")
    people, _ = cell_population(cells.geometry, layers["population"])
    districts = geopandas.read_file(layers["districts"], engine="pyogrio")
    centres = cells.assign(people=people, geometry=cells.geometry.representative_point())
    joined = geopandas.sjoin(centres, districts[["name", "geometry"]], predicate="within")
    grouped = joined.groupby("name")
    weighted = grouped.apply(lambda g: (g["people"] * g["prob_mean"]).sum() / g["people"].sum())
    for name, value in weighted.items():
        assert written.loc[name, "covariate"] == pytest.approx(value, abs=1e-9)
        assert written.loc[name, "population"] == pytest.approx(grouped["people"].sum()[name])
    assert not np.allclose(weighted, reference_covariate(layers))  # the weighting matters
    estimated = written["estimate"].notna() & written["population"].notna()
    np.testing.assert_allclose(
        written.loc[estimated, "poor_people"],
        written.loc[estimated, "estimate"] * written.loc[estimated, "population"],
    )


def test_out_of_fold_probabilities_replace_the_predictions_they_cover(layers):
    _, plain, _, _ = run_core(layers, "in_fold")
    _, oof, _, warnings = run_core(layers, "oof", out_of_fold_path=layers["out_of_fold"])
    assert not any("No OUT_OF_FOLD" in message for message in warnings)
    assert (
        oof["covariate"].dropna() > plain["covariate"].dropna()
    ).all()  # 0.9 in a third of cells


def test_arcsin_bootstrap_and_benchmarking(layers):
    settings = {
        "transform": "arcsin",
        "mse": "bootstrap",
        "bootstrap_draws": 60,
        "seed": 5,
        "population_path": layers["population"],
    }
    summary, written, _, _ = run_core(layers, "arcsin", benchmark="national", **settings)
    _, rewritten, _, _ = run_core(layers, "arcsin_again", benchmark="national", **settings)
    plain_summary, plain, _, _ = run_core(layers, "arcsin_plain", **settings)
    np.testing.assert_array_equal(written["mse"].to_numpy(), rewritten["mse"].to_numpy())  # seeded
    finite = plain["estimate"].notna() & (plain["population"] > 0)
    assert ((written.loc[finite, "estimate"] >= 0) & (written.loc[finite, "estimate"] <= 1)).all()
    # the factor makes the population-weighted mean of the estimates the national direct estimate
    people = plain.loc[finite, "population"]
    factor = summary["national_direct"] / (
        (plain.loc[finite, "estimate"] * people).sum() / people.sum()
    )
    assert summary["benchmark_factor"] == pytest.approx(factor, rel=1e-9)
    np.testing.assert_allclose(
        written["estimate"], np.clip(plain["estimate"] * factor, 0, 1), rtol=1e-9
    )  # estimates held at 1 where the factor would push them above
    np.testing.assert_allclose(written["se"], plain["se"] * factor, rtol=1e-9)
    assert summary["national_direct"] == pytest.approx(plain_summary["national_direct"])
    assert summary["mse_method"] == "bootstrap"
    assert summary["model"]["scale"] == "arcsin square root"


def test_smoothed_variances_are_the_design_effect_formula_for_every_district(layers):
    _, own, _, _ = run_core(layers, "own_variances")
    summary, written, _, warnings = run_core(layers, "smoothed_variances", variances="smoothed")
    point, variance = reference_direct(layers)
    reliable = [name for name in point if name not in ("D12+D13", "D14")]
    # the design effect: the median over the districts with a usable variance of v / (p(1 - p)/n)
    effects = [
        variance[name] / (point[name] * (1 - point[name]) / written.loc[name, "households"])
        for name in reliable
    ]
    deff, share = float(np.median(effects)), summary["national_direct"]
    sampled = written[written["in_sample"] == 1]
    np.testing.assert_allclose(
        sampled["direct_se"] ** 2, deff * share * (1 - share) / sampled["households"], rtol=1e-9
    )
    assert (sampled["variance_smoothed"] == 1).all()
    np.testing.assert_allclose(sampled["direct"], own.loc[sampled.index, "direct"])
    assert any("VARIANCES smoothed" in message for message in warnings)
    assert summary["settings"]["variances"] == "smoothed"


def test_without_clusters_the_households_of_a_cell_form_a_cluster(layers):
    summary, written, _, warnings = run_core(
        layers, "cells", cluster_field=None, stratum_field=None
    )
    assert any("CLUSTER_FIELD" in message for message in warnings)
    assert (written.loc[written["in_sample"] == 1, "clusters"] >= 1).all()
    assert summary["sampled_districts"] == 15


@pytest.mark.parametrize(
    ("settings", "parameter", "words"),
    [
        ({"weight_field": "weight_text"}, "WEIGHT_FIELD", "not numeric"),
        ({"cv_threshold": 0}, "CV_THRESHOLD", "positive"),
        ({"transform": "log"}, "TRANSFORM", "none, arcsin"),
        ({"bootstrap_draws": 3}, "BOOTSTRAP_DRAWS", "at least 10"),
        ({"variances": "pooled"}, "VARIANCES", "direct, smoothed"),
        ({"score_field": "ea"}, "SCORE_FIELD", "not numeric"),
    ],
)
def test_bad_input_names_the_parameter_and_writes_nothing(
    layers, tmp_path, settings, parameter, words
):
    with pytest.raises(PovmapInputError) as raised:
        run_core(
            layers,
            "bad",
            **{
                "output_path": str(tmp_path / "o.gpkg"),
                "table_path": str(tmp_path / "t.csv"),
                **settings,
            },
        )
    assert raised.value.parameter == parameter and words in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_fewer_than_five_surveyed_districts_are_refused(layers, tmp_path):
    import geopandas

    survey = geopandas.read_file(layers["survey"], engine="pyogrio")
    few = survey[survey["ea"].str.match(r"ea-[0-3]-")]
    path = tmp_path / "few.gpkg"
    few.to_file(path, engine="pyogrio")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PovmapInputError) as raised:
        run_core(
            layers,
            "few",
            survey_path=str(path),
            output_path=str(out / "o.gpkg"),
            table_path=str(out / "t.csv"),
        )
    assert raised.value.parameter == "SURVEY"
    assert "σ²u" in str(raised.value) and "only 4 districts" in str(raised.value)
    assert os.listdir(out) == []


def test_districtestimates_through_qgis_process_returns_the_numbers_and_a_report(layers):
    from conftest import run_qgis_process

    folder = layers["folder"] / "qgis-process"
    folder.mkdir()
    completed = run_qgis_process(
        "run",
        "povmap:districtestimates",
        "--",
        f"SURVEY={layers['survey']}",
        "SCORE_FIELD=score",
        "WEIGHT_FIELD=weight",
        "CLUSTER_FIELD=ea",
        "STRATUM_FIELD=region",
        f"DISTRICTS={layers['districts']}",
        "DISTRICT_FIELD=name",
        f"PREDICTIONS={layers['predictions']}",
        f"POPULATION={layers['population']}",
        "TRANSFORM=none",
        "MSE=analytical",
        "BENCHMARK=national",
        "CV_THRESHOLD=0.25",
        f"OUTPUT={folder / 'estimates.gpkg'}",
        f"TABLE={folder / 'estimates.csv'}",
        f"REPORT={folder / 'estimates.html'}",
    )
    results = dict(line.split(":\t", 1) for line in completed.stdout.splitlines() if ":\t" in line)
    import geopandas

    written = geopandas.read_file(folder / "estimates.gpkg", engine="pyogrio")
    assert int(float(results["DISTRICTS"])) == len(written) == 16
    assert int(float(results["SAMPLED_DISTRICTS"])) == int(written["in_sample"].sum()) == 15
    assert int(float(results["PUBLISHABLE_ESTIMATE"])) == int((written["cv"] <= 0.25).sum())
    assert float(results["MEDIAN_CV_ESTIMATE"]) == pytest.approx(written["cv"].median(), rel=1e-6)
    assert float(results["MEDIAN_CV_DIRECT"]) == pytest.approx(
        written["direct_cv"].median(), rel=1e-6
    )  # of the surveyed districts (empty elsewhere); a share of 0 has an infinite CV
    assert float(results["SIGMA2_U"]) > 0 and 0 < float(results["NATIONAL_DIRECT"]) < 1
    with open(folder / "estimates.html", encoding="utf-8") as handle:
        html = handle.read()
    assert "districts have survey households" in html
    assert html.count("data:image/png;base64,") == 5  # 3 figures, the estimates and the CV maps
    assert (folder / "estimates.qml").exists()  # styled on load, also by hand
    assert sorted(os.listdir(folder)) == [
        "estimates.csv",
        "estimates.gpkg",
        "estimates.html",
        "estimates.qml",
    ]


def test_bad_input_through_processing_names_the_parameter_and_writes_nothing(
    layers, povmap_provider
):
    from qgis_helpers import run_failing

    folder = layers["folder"] / "processing-bad"
    folder.mkdir()
    message = run_failing(
        "povmap:districtestimates",
        {
            "SURVEY": layers["survey"],
            "SCORE_FIELD": "score",
            "WEIGHT_FIELD": "weight_text",
            "DISTRICTS": layers["districts"],
            "DISTRICT_FIELD": "name",
            "PREDICTIONS": layers["predictions"],
            "OUTPUT": str(folder / "out.gpkg"),
            "TABLE": str(folder / "table.csv"),
            "REPORT": str(folder / "report.html"),
        },
    )
    assert "WEIGHT_FIELD" in message
    assert os.listdir(folder) == []


def test_the_sample_projects_subdistricts_estimated_from_its_clustered_survey(
    tiny_sample, tmp_path
):
    """The generator's --sae output (sub-districts with their true rates, a two-stage weighted survey):
    with a map as informative as a good model's (each cell the truth of its sub-district plus noise),
    the estimates are closer to the truth than the direct estimates and their median CV is lower."""
    import json

    import geopandas
    import shapely

    with open(
        os.path.join(tiny_sample, "synthetic_sample_metadata.json"), encoding="utf-8"
    ) as handle:
        record = json.load(handle)["small_areas"]
    truth = {row["subdistrict"]: row["poor_share"] for row in record["subdistricts"]}
    assert 30 <= len(truth) <= 60
    subdistricts = geopandas.read_file(
        os.path.join(tiny_sample, "synthetic_subdistricts.gpkg"), engine="pyogrio"
    )
    survey = geopandas.read_file(
        os.path.join(tiny_sample, "synthetic_clustered_survey.gpkg"), engine="pyogrio"
    )
    assert sorted(subdistricts["subdistrict"]) == sorted(truth)
    assert len(survey) == record["clustered_survey"]["households"]
    assert survey["ea"].nunique() == record["clustered_survey"]["enumeration_areas"]
    assert (survey["weight"] > 0).all() and survey[
        "weight"
    ].nunique() >= 5  # weights differ by stratum
    # a map: 1 km cells, prob_mean = the sub-district's true rate + noise (sd 0.08)
    rng = np.random.default_rng(4)
    xmin, ymin, xmax, ymax = subdistricts.total_bounds
    xs, ys = np.meshgrid(np.arange(xmin, xmax, 1000.0), np.arange(ymin, ymax, 1000.0))
    boxes = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 1000, ys.ravel() + 1000)
    cells = geopandas.GeoDataFrame(
        {"cell_id": np.arange(len(boxes), dtype="int64")}, geometry=boxes, crs=subdistricts.crs
    )
    centres = cells.assign(geometry=cells.geometry.representative_point())
    joined = geopandas.sjoin(centres, subdistricts, predicate="within").drop_duplicates("cell_id")
    cells = cells[cells["cell_id"].isin(joined["cell_id"])].copy()
    rate = joined.set_index("cell_id")["subdistrict"].map(truth)
    cells["prob_mean"] = np.clip(
        rate.loc[cells["cell_id"]].to_numpy() + rng.normal(0, 0.08, len(cells)), 0.01, 0.99
    )
    predictions = tmp_path / "map.gpkg"
    cells.to_file(predictions, engine="pyogrio")
    layers = {
        "folder": tmp_path,
        "survey": os.path.join(tiny_sample, "synthetic_clustered_survey.gpkg"),
    }
    summary, written, _, _ = run_core(
        {
            **layers,
            "districts": os.path.join(tiny_sample, "synthetic_subdistricts.gpkg"),
            "predictions": str(predictions),
        },
        "sample",
        district_field="subdistrict",
        stratum_field="district",
        population_path=os.path.join(tiny_sample, "synthetic_population_3arcsec.tif"),
    )
    written["truth"] = written.index.map(truth)
    few = written[(written["households"] > 0) & (written["households"] < 3)]
    assert len(few) and (few["in_sample"] == 0).all() and few["direct"].isna().all()  # privacy
    assert (few["gamma"] == 0).all()  # the estimate is synthetic: nothing of their households in it
    sampled = written[(written["in_sample"] == 1) & written["estimate"].notna()]
    assert len(sampled) >= 20 and (written["in_sample"] == 0).any()
    direct_error = (sampled["direct"] - sampled["truth"]).abs().mean()
    estimate_error = (sampled["estimate"] - sampled["truth"]).abs().mean()
    assert estimate_error < 0.8 * direct_error, (estimate_error, direct_error)
    assert summary["median_cv_estimate_sampled"] < summary["median_cv_direct"]
    unsampled = written[(written["in_sample"] == 0) & written["estimate"].notna()]
    assert (unsampled["estimate"] - unsampled["truth"]).abs().mean() < 0.15
