"""The command line: arguments, the generation run and its metadata record."""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from .checks import ceiling_check
from .common import (
    ACCESS_DEG,
    COARSE_M,
    CRS_GEOGRAPHIC,
    CRS_PROJECTED,
    FILES,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    ORIGIN_X,
    ORIGIN_Y,
    PAD_M,
    PIXEL_M,
    POPULATION_DEG,
    POVERTY_CUTOFF,
    RENDER_FILE,
    SYNTHETIC_STATEMENT,
    VIIRS_DEG,
    WORK_M,
)
from .daytime import BAND_DESCRIPTIONS, write_daytime
from .landscape import make_landscape
from .lights import night_light_field, travel_time_minutes, write_accessibility, write_night_lights
from .population import true_poverty_of_district, write_population
from .project import build_project, display_hints, write_metadata
from .settings import SIZES, LandscapeSettings, SurveySettings
from .small_areas import SAE_FILES, write_small_area_files
from .surveys import make_covariates, make_survey
from .tools import Grid, random_stream
from .vectors import write_districts, write_survey, write_urban_centres


class Timer:
    def __init__(self, quiet):
        self.quiet, self.steps, self._last, self.start = (
            quiet,
            {},
            time.monotonic(),
            time.monotonic(),
        )

    def done(self, step, note=""):
        now = time.monotonic()
        self.steps[step] = round(now - self._last, 2)
        self._last = now
        if not self.quiet:
            print(f"  {step:<28} {self.steps[step]:7.2f} s  {note}", flush=True)

    @property
    def total(self):
        return round(time.monotonic() - self.start, 2)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Generate the SYNTHETIC sample project of povmap-qgis (an invented irrigated river plain).",
        epilog="Example: python scripts/make_sample_project.py --size tiny --out /tmp/povmap-sample --render",
    )
    parser.add_argument(
        "--size",
        required=True,
        choices=sorted(SIZES),
        help="tiny: ~24 x 16 km for tests (seconds); demo: ~60 x 50 km for trainers (minutes)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created; the generated files in it are replaced)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="random seed (0 to 2**32-1; default 42)"
    )
    parser.add_argument(
        "--render", action="store_true", help=f"also render the project to {RENDER_FILE}"
    )
    parser.add_argument(
        "--render-width", type=int, default=1600, help="width of the rendered PNG in pixels"
    )
    parser.add_argument(
        "--no-project", action="store_true", help="skip the QGIS project (no PyQGIS needed)"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the training-grid check and ceiling AUC (they run the plugin's training-grid "
        "code and only add numbers to the metadata; the test fixtures skip them)",
    )
    parser.add_argument(
        "--sae",
        action="store_true",
        help="also write what small area estimation needs: sub-districts (their true poverty rates in "
        "the metadata) and a two-stage clustered survey with weights (the other files are unchanged)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be between 0 and {2**32 - 1} (got {args.seed})")
    if not 200 <= args.render_width <= 8000:
        parser.error(
            f"--render-width must be between 200 and 8000 pixels (got {args.render_width})"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a folder")
    if args.render and args.no_project:
        parser.error("--render needs the project; drop --no-project")
    return args


def remove_previous_outputs(out_dir):
    for name in list(FILES.values()) + list(SAE_FILES.values()) + [RENDER_FILE]:
        for path in (out_dir / name, out_dir / (name + ".aux.xml")):
            if path.exists():
                path.unlink()


def generate(args):
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_previous_outputs(out_dir)
    # GeoPackages record when they were written; a fixed date keeps the files reproducible.
    os.environ["OGR_CURRENT_DATE"] = "2020-01-01T00:00:00Z"
    size, land, survey_settings = SIZES[args.size], LandscapeSettings(), SurveySettings()
    timer = Timer(args.quiet)
    if not args.quiet:
        print(
            f"Generating the SYNTHETIC sample project (size {args.size}, seed {args.seed}) in {out_dir}"
        )

    landscape = make_landscape(args.seed, size, land)
    s = landscape.settlements
    timer.done(
        "landscape",
        f"{s.n_towns} towns, {(s.kind == 1).sum()} villages, {(s.kind == 2).sum()} hamlets, "
        f"{len(landscape.houses.x)} houses",
    )
    write_districts(out_dir / FILES["districts"], landscape)
    write_urban_centres(out_dir / FILES["urban_centres"], landscape)
    timer.done("districts, urban centres")

    fine = Grid.covering(size.width_m, size.height_m, PIXEL_M)
    ndvi = write_daytime(out_dir / FILES["daytime"], args.seed, landscape, fine)
    timer.done("daytime image", f"{fine.ncols} x {fine.nrows} px")

    work = Grid.covering(size.width_m, size.height_m, WORK_M, PAD_M)
    lights = night_light_field(landscape, work)
    radiance = write_night_lights(
        out_dir / FILES["nightlights"], args.seed, landscape, work, lights
    )
    irrigation_work = landscape.irrigation.reshape(work.nrows, 2, work.ncols, 2).mean(axis=(1, 3))
    minutes, _ = travel_time_minutes(landscape, work, irrigation_work)
    travel = write_accessibility(out_dir / FILES["accessibility"], landscape, work, minutes)
    timer.done("night lights, travel time")
    population_total = write_population(out_dir / FILES["population"], landscape)
    timer.done("population raster", f"{population_total:,.0f} people")

    covariates = make_covariates(args.seed, work, ndvi, lights, minutes, survey_settings)
    surveyed = [k for k in range(len(landscape.districts.names)) if landscape.districts.surveyed[k]]
    unsurveyed = [
        k for k in range(len(landscape.districts.names)) if not landscape.districts.surveyed[k]
    ]
    start = np.datetime64(survey_settings.survey_start)
    days = int((np.datetime64(survey_settings.survey_end) - start).astype(int))
    survey, model = make_survey(
        random_stream(args.seed, "survey"),
        landscape,
        covariates,
        survey_settings,
        surveyed,
        size.survey_households,
        size.household_noise_sd,
        (survey_settings.survey_start, days),
    )
    truth, _ = make_survey(
        random_stream(args.seed, "ground-truth"),
        landscape,
        covariates,
        survey_settings,
        unsurveyed,
        size.ground_truth_households,
        size.household_noise_sd,
        (survey_settings.ground_truth_start, survey_settings.ground_truth_days),
        model=model,
        first_id=1_000_001,
        early=False,
    )
    write_survey(out_dir / FILES["survey"], "synthetic_survey", survey)
    write_survey(out_dir / FILES["ground_truth_survey"], "synthetic_ground_truth_survey", truth)
    timer.done("surveys", f"{len(survey.x)} + {len(truth.x)} households")

    checks = {}
    if not args.no_check:
        checks["survey"] = ceiling_check(out_dir, survey, FILES["survey"], "synthetic_survey")
        checks["ground_truth_survey"] = ceiling_check(
            out_dir, truth, FILES["ground_truth_survey"], "synthetic_ground_truth_survey"
        )
        timer.done(
            "training-grid check",
            f"{checks['survey']['labelled_cells']} labelled cells, "
            f"ceiling AUC {checks['survey']['ceiling_auc']}",
        )

    record = metadata_record(
        args,
        size,
        land,
        survey_settings,
        landscape,
        survey,
        truth,
        model,
        checks,
        display_hints(out_dir / FILES["daytime"], radiance, travel),
    )
    record["files"][FILES["population"]] = {
        "crs": CRS_GEOGRAPHIC,
        "resolution_deg": POPULATION_DEG,
        "dtype": "float32",
        "units": "people per pixel",
        "nodata": None,
        "total": round(population_total, 1),
    }
    record["ground_truth_district"] = true_poverty_of_district(
        args.seed, landscape, covariates, model, size, unsurveyed[0]
    )
    if args.sae:
        record["small_areas"] = write_small_area_files(
            out_dir, args.seed, landscape, covariates, model, size, args.size
        )
        for key, layer in (
            ("subdistricts", "synthetic_subdistricts"),
            ("clustered_survey", "synthetic_clustered_survey"),
        ):
            record["files"][SAE_FILES[key]] = {"layer": layer}
        timer.done(
            "small areas",
            f"{len(record['small_areas']['subdistricts'])} sub-districts, "
            f"{record['small_areas']['clustered_survey']['households']} clustered households",
        )
    write_metadata(out_dir / FILES["metadata"], record)
    if not args.no_project:
        build_project(out_dir, args.render, args.render_width, args.quiet)
        timer.done("QGIS project" + (" + render" if args.render else ""))
    if not args.quiet:
        print_summary(out_dir, record, timer)
    return record


def metadata_record(
    args, size, land, survey_settings, landscape, survey, truth, model, checks, display
):
    from pyproj import Transformer

    s = landscape.settlements
    to_lonlat = Transformer.from_crs(CRS_PROJECTED, CRS_GEOGRAPHIC, always_xy=True)
    west, south = to_lonlat.transform(ORIGIN_X, ORIGIN_Y)
    east, north = to_lonlat.transform(ORIGIN_X + size.width_m, ORIGIN_Y + size.height_m)

    def error_counts(table):
        return {
            kind: int((table.error == kind).sum())
            for kind in ("zero", "diffuse", "congregation", "early")
        }

    main_check = checks.get("survey", {})
    return {
        "synthetic": True,
        "statement": SYNTHETIC_STATEMENT,
        "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION},
        "seed": args.seed,
        "size": args.size,
        "settings": {
            "size": dataclasses.asdict(size),
            "landscape": dataclasses.asdict(land),
            "survey": dataclasses.asdict(survey_settings),
            "score_offset": round(model.offset, 4),
            "poverty_cutoff": POVERTY_CUTOFF,
            "pixel_m": PIXEL_M,
            "coarse_m": COARSE_M,
            "working_grid_m": WORK_M,
        },
        "region": {
            "crs": CRS_PROJECTED,
            "bounds": [ORIGIN_X, ORIGIN_Y, ORIGIN_X + size.width_m, ORIGIN_Y + size.height_m],
            "approximate_lonlat_bounds": [
                round(west, 4),
                round(south, 4),
                round(east, 4),
                round(north, 4),
            ],
        },
        "files": {
            FILES["districts"]: {
                "layer": "synthetic_districts",
                "crs": CRS_PROJECTED,
                "fields": ["name", "surveyed"],
            },
            FILES["daytime"]: {
                "crs": CRS_PROJECTED,
                "resolution_m": PIXEL_M,
                "dtype": "uint16",
                "nodata": 0,
                "bands": list(BAND_DESCRIPTIONS),
                "units": "surface reflectance x 10000",
            },
            FILES["nightlights"]: {
                "crs": CRS_GEOGRAPHIC,
                "resolution_deg": VIIRS_DEG,
                "dtype": "float32",
                "units": "nW/cm2/sr",
                "nodata": None,
            },
            FILES["accessibility"]: {
                "crs": CRS_GEOGRAPHIC,
                "resolution_deg": ACCESS_DEG,
                "dtype": "float32",
                "units": "minutes to the nearest town",
                "nodata": None,
            },
            FILES["survey"]: {
                "layer": "synthetic_survey",
                "crs": CRS_GEOGRAPHIC,
                "fields": ["hh_id", "score", "gps_accuracy_m", "survey_date"],
            },
            FILES["ground_truth_survey"]: {
                "layer": "synthetic_ground_truth_survey",
                "crs": CRS_GEOGRAPHIC,
                "fields": ["hh_id", "score", "gps_accuracy_m", "survey_date"],
            },
            FILES["urban_centres"]: {
                "layer": "synthetic_urban_centres",
                "crs": CRS_PROJECTED,
                "fields": ["name", "population"],
            },
            FILES["metadata"]: {"description": "this file"},
            FILES["project"]: {
                "description": "QGIS project (relative paths)",
                "built": not args.no_project,
            },
        },
        "counts": {
            "towns": int(s.n_towns),
            "villages": int((s.kind == 1).sum()),
            "hamlets": int((s.kind == 2).sum()),
            "population": int(s.population.sum()),
            "houses": int(len(landscape.houses.x)),
            "districts": len(landscape.districts.names),
            "surveyed_districts": [
                n
                for n, v in zip(
                    landscape.districts.names, landscape.districts.surveyed, strict=True
                )
                if v
            ],
            "unsurveyed_district": [
                n
                for n, v in zip(
                    landscape.districts.names, landscape.districts.surveyed, strict=True
                )
                if not v
            ][0],
            "survey_households": int(len(survey.x)),
            "survey_errors": error_counts(survey),
            "ground_truth_households": int(len(truth.x)),
            "ground_truth_errors": error_counts(truth),
            "canals": len(landscape.canals),
            "roads": len(landscape.roads.lines),
        },
        "ceiling_auc": main_check.get("ceiling_auc"),
        "labelled_cells": main_check.get("labelled_cells"),
        "poor_share": main_check.get("poor_share"),
        "ceiling_auc_note": (
            "AUC of the noise-free latent wealth (mean over each cell's generated households, "
            "negated) against the cell labels of the training grid built with the default "
            "cleaning; what a perfect model of the landscape could reach."
        ),
        "checks": checks,
        "display": display,
    }


def print_summary(out_dir, record, timer):
    print("Summary")
    counts = record["counts"]
    print(
        f"  region {record['region']['bounds']} ({record['region']['crs']}), "
        f"{counts['towns']} towns, {counts['villages']} villages, {counts['hamlets']} hamlets"
    )
    print(
        f"  survey {counts['survey_households']} households, ground truth {counts['ground_truth_households']} "
        f"(unsurveyed district {counts['unsurveyed_district']})"
    )
    if record["labelled_cells"] is not None:
        truth = record["checks"]["ground_truth_survey"]
        print(
            f"  labelled cells {record['labelled_cells']} (poor share {record['poor_share']}), "
            f"ceiling AUC {record['ceiling_auc']}; ground truth {truth['labelled_cells']} cells, "
            f"ceiling AUC {truth['ceiling_auc']}"
        )
    for name in sorted(p.name for p in out_dir.iterdir() if p.name.startswith("synthetic_")):
        print(f"  {name:<42} {(out_dir / name).stat().st_size / 1e6:8.2f} MB")
    print(f"  total {timer.total:.1f} s")


def main(argv=None):
    args = parse_arguments(argv)
    try:
        generate(args)
    except (RuntimeError, OSError) as error:
        print(f"make_sample_project: error: {error}", file=sys.stderr)
        return 1
    return 0
