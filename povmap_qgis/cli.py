"""Command line for the heavy steps, without QGIS: ``python -m povmap_qgis.cli samplechips|predict …``.

The same parameters as the Processing algorithms (``--grid`` is GRID,
``--max-nodata`` is MAX_NODATA…), the same options dataclasses and core
steps. With ``--engine spark`` it serves ``spark-submit`` on a cluster
(see docs/spark.md): under spark-submit the master comes from spark-submit
unless ``--spark-master`` is given. Progress and messages go to stderr; the
step's summary is printed on stdout as JSON.

Exit status: 0 done, 2 a parameter to fix (the message names it), 130
cancelled (Ctrl+C), 1 anything else.
"""

import argparse
import json
import signal
import sys

# Absolute imports: spark-submit runs this file as a script (with the package on --py-files).
from povmap_qgis.core.chips.raster_sampler import RESAMPLING_METHODS
from povmap_qgis.core.names import PREDICTION_SOURCES

ENGINES = ("local", "spark")


def _bands(text):
    try:
        bands = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        bands = []
    if not bands or any(band < 1 for band in bands):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of band numbers such as 1,2,3")
    return bands


def _engine_arguments(parser):
    group = parser.add_argument_group("engine (ENGINE, SPARK_MASTER)")
    group.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs")
    group.add_argument(
        "--spark-master",
        default=None,
        help="Spark master URL (local[*], spark://host:7077, yarn, k8s://…); default: the one "
        "spark-submit gives, else local[*]. Extra settings: POVMAP_SPARK_CONF='key=value;…'",
    )


def _raster_arguments(parser):
    """DAYTIME, NIGHTLIGHTS, ACCESSIBILITY, EXTRA and their resampling (samplechips; predict from rasters)."""
    parser.add_argument("--daytime", help="DAYTIME raster (path, /vsicurl/…, /vsis3/…)")
    parser.add_argument("--daytime-bands", type=_bands, default=[1, 2, 3], help="DAYTIME_BANDS")
    parser.add_argument("--nightlights", help="NIGHTLIGHTS raster (band 1)")
    parser.add_argument("--accessibility", help="ACCESSIBILITY raster (band 1)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="EXTRA raster, every band, stored as input NAME (repeatable)",
    )
    for name in ("daytime", "nightlights", "accessibility", "extra"):
        parser.add_argument(
            f"--{name}-resampling",
            choices=RESAMPLING_METHODS,
            default="bilinear",
            help=f"{name.upper()}_RESAMPLING",
        )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m povmap_qgis.cli", description=__doc__.split("\n\n")[0]
    )
    steps = parser.add_subparsers(dest="step", required=True)

    chips = steps.add_parser("samplechips", help="Sample image chips (povmap:samplechips)")
    chips.add_argument("--grid", required=True, help="GRID: GeoPackage of cells with cell_id")
    chips.add_argument("--grid-layer", default=None, help="layer of GRID (default: its only one)")
    _raster_arguments(chips)
    chips.add_argument("--resolution", type=float, default=10.0, help="RESOLUTION in metres")
    chips.add_argument("--chip-size", type=int, default=None, help="CHIP_SIZE (default: computed)")
    chips.add_argument("--max-nodata", type=float, default=0.1, help="MAX_NODATA fraction")
    chips.add_argument("--output", required=True, help="OUTPUT chip store (folder NAME.chips)")
    chips.add_argument("--nodata-grid", default=None, help="NODATA_GRID GeoPackage (optional)")
    _engine_arguments(chips)

    predict = steps.add_parser("predict", help="Predict poverty (povmap:predict)")
    predict.add_argument("--model", default=None, help="MODEL .povmodel (default: bundled demo)")
    predict.add_argument(
        "--source",
        choices=PREDICTION_SOURCES,
        default="chips",
        help="SOURCE: read the chip store --chips (default), or the rasters (--daytime, "
        "--nightlights, --accessibility, --extra: every input the model was trained on), "
        "sampled block by block and predicted at once, no chips stored",
    )
    predict.add_argument("--chips", default=None, help="CHIPS: the grid's chip store")
    predict.add_argument("--grid", required=True, help="GRID: the cells to predict")
    predict.add_argument("--grid-layer", default=None, help="layer of GRID")
    predict.add_argument("--output", required=True, help="OUTPUT GeoPackage of predictions")
    predict.add_argument("--batch-rows", type=int, default=64, help="cells per batch")
    rasters = predict.add_argument_group("rasters (with --source rasters)")
    _raster_arguments(rasters)
    rasters.add_argument(
        "--max-nodata",
        type=float,
        default=0.1,
        help="MAX_NODATA: chip_flagged = 1 above this nodata fraction",
    )
    _engine_arguments(predict)
    return parser


def chip_options(arguments):
    """ChipOptions from the samplechips arguments (what the Processing algorithm builds)."""
    from povmap_qgis.core.chips.sampling import ChipOptions

    return ChipOptions(
        grid_path=arguments.grid,
        grid_layer=arguments.grid_layer,
        inputs=chip_inputs(arguments),
        output_path=arguments.output,
        resolution=arguments.resolution,
        chip_size=arguments.chip_size,
        max_nodata=arguments.max_nodata,
        nodata_grid_path=arguments.nodata_grid,
        style_qml_path=_style("chip_nodata"),
        **_engine_options(arguments),
    )


def chip_inputs(arguments):
    """The ChipInputs of --daytime, --nightlights, --accessibility and --extra."""
    from povmap_qgis.core.chips.sampling import ChipInput
    from povmap_qgis.core.errors import PovmapInputError

    inputs = []
    for name in ("daytime", "nightlights", "accessibility"):
        path = getattr(arguments, name)
        if path:
            inputs.append(
                ChipInput(
                    name,
                    path,
                    arguments.daytime_bands if name == "daytime" else [1],
                    getattr(arguments, f"{name}_resampling"),
                    parameter=name.upper(),
                )
            )
    for item in arguments.extra:
        name, equals, path = item.partition("=")
        if not equals or not name or not path:
            raise PovmapInputError("EXTRA", f"'{item}' is not NAME=PATH.")
        inputs.append(
            ChipInput(name, path, _all_bands(path), arguments.extra_resampling, parameter="EXTRA")
        )
    return inputs


def predict_options(arguments):
    """PredictOptions from the predict arguments (what the Processing algorithm builds)."""
    from povmap_qgis.core.model.prediction import PredictOptions
    from povmap_qgis.paths import bundled_model_path

    return PredictOptions(
        model_path=arguments.model or bundled_model_path(),
        chips_path=arguments.chips,
        source=arguments.source,
        inputs=chip_inputs(arguments) if arguments.source == "rasters" else None,
        max_nodata=arguments.max_nodata,
        grid_path=arguments.grid,
        grid_layer=arguments.grid_layer,
        output_path=arguments.output,
        batch_rows=arguments.batch_rows,
        style_qml_path=_style("prediction_class"),
        **_engine_options(arguments),
    )


def _engine_options(arguments):
    # An empty master lets spark-submit's --master (or local[*] outside spark-submit) decide.
    return {"engine": arguments.engine, "spark_master": arguments.spark_master or ""}


def _all_bands(path):
    import rasterio

    from povmap_qgis.core.errors import PovmapInputError

    try:
        with rasterio.open(path) as dataset:
            return list(range(1, dataset.count + 1))
    except Exception as error:
        raise PovmapInputError("EXTRA", f"cannot open the raster '{path}': {error}") from None


def _style(name):
    import os

    from povmap_qgis.paths import style_path

    path = style_path(name)
    return path if os.path.isfile(path) else None


def main(argv=None):
    from povmap_qgis.core.errors import PovmapCanceledError, PovmapInputError
    from povmap_qgis.core.progress import ConsoleReporter

    arguments = build_parser().parse_args(argv)
    reporter = ConsoleReporter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleaned up like Ctrl+C
    try:
        if arguments.step == "samplechips":
            from povmap_qgis.core.engines.steps import sample_chips

            summary = sample_chips(chip_options(arguments), reporter)
        else:
            from povmap_qgis.core.engines.steps import predict

            summary = predict(predict_options(arguments), reporter)
    except PovmapInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, PovmapCanceledError):
        print("cancelled", file=sys.stderr)
        return 130
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
