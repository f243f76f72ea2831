"""povmap:samplechips — every cell of a grid → aligned image chips from the loaded rasters."""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core.chips.chip_store import DEFAULT_MAX_NODATA, RESERVED_NAMES, partial_store_path
from ..core.chips.raster_sampler import RESAMPLING_METHODS
from ..core.names import CELL_ID, DEFAULT_RESOLUTION
from ..paths import style_path
from .base import POLYGON_SOURCES, PovmapAlgorithm
from .engine import EngineParameters, add_engine_parameters, engine_options
from .layer_names import input_layer_name, name_output


class RasterParameters:
    """The ids of the rasters chips come from (``add_raster_parameters``): a base class of the
    algorithms that have them. Each also has ``<RASTER>_RESAMPLING`` (``resampling_id``)."""

    DAYTIME = "DAYTIME"
    DAYTIME_BANDS = "DAYTIME_BANDS"
    NIGHTLIGHTS = "NIGHTLIGHTS"
    ACCESSIBILITY = "ACCESSIBILITY"
    EXTRA = "EXTRA"


def resampling_id(name):
    """The id of the resampling parameter of raster parameter ``name``: DAYTIME_RESAMPLING."""
    return f"{name}_RESAMPLING"


NAMED_INPUTS = [  # parameter, store input name, label (help: help/common.py)
    (RasterParameters.DAYTIME, "daytime", "Daytime imagery (e.g. Sentinel-2)"),
    (RasterParameters.NIGHTLIGHTS, "nightlights", "Night-time lights (e.g. VIIRS)"),
    (RasterParameters.ACCESSIBILITY, "accessibility", "Accessibility (e.g. travel time to cities)"),
]


class SampleChips(RasterParameters, EngineParameters, PovmapAlgorithm):
    RESOLUTION = "RESOLUTION"
    CHIP_SIZE = "CHIP_SIZE"
    MAX_NODATA = "MAX_NODATA"
    NODATA_GRID = "NODATA_GRID"
    CELLS = "CELLS"
    SAMPLED = "SAMPLED"
    RESUMED_CELLS = "RESUMED_CELLS"
    FLAGGED = "FLAGGED"

    algorithm_id = "samplechips"
    display_name = "Sample image chips"
    group_id = "chips"
    group_name = "2 · Image chips"

    def initAlgorithm(self, config=None):
        self.add_parameter(
            QgsProcessingParameterFeatureSource(self.GRID, self.tr("Grid"), POLYGON_SOURCES),
        )
        self.add_parameter(
            QgsProcessingParameterField(
                self.ID_FIELD,
                self.tr("Cell id field"),
                CELL_ID,
                self.GRID,
                QgsProcessingParameterField.DataType.Numeric,
                optional=True,  # qgis_process 3.22 forgets a field's default: empty is cell_id
            ),
        )
        add_raster_parameters(self)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.RESOLUTION,
                self.tr("Chip resolution (m)"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_RESOLUTION,
                False,
                0.01,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CHIP_SIZE,
                self.tr("Chip size (px, 0 = cell size / resolution)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                True,
                0,
            ),
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MAX_NODATA,
                self.tr("Maximum nodata fraction"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_MAX_NODATA,
                False,
                0.0,
                1.0,
            ),
        )
        add_resampling_parameters(self)
        self.add_parameter(
            QgsProcessingParameterFolderDestination(
                self.OUTPUT, self.tr("Chip store (folder ending in .chips)")
            ),
        )
        self.add_parameter(
            QgsProcessingParameterVectorDestination(
                self.NODATA_GRID,
                self.tr("Grid with nodata fractions"),
                QgsProcessing.SourceType.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            ),
        )
        add_engine_parameters(self)
        for key, label in (
            (self.CELLS, "Cells"),
            (self.SAMPLED, "Cells sampled in this run"),
            (self.RESUMED_CELLS, "Cells already sampled by an earlier run"),
            (self.FLAGGED, "Flagged cells"),
        ):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        output = self.output_folder(parameters, self.OUTPUT, context, ".chips")
        nodata_grid = (
            self.output_gpkg(parameters, self.NODATA_GRID, context)
            if parameters.get(self.NODATA_GRID) not in (None, "")
            else None
        )
        inputs = raster_inputs(self, parameters, context)
        if not inputs:
            raise QgsProcessingException(
                self.tr(
                    "Choose at least one input raster: DAYTIME, NIGHTLIGHTS, ACCESSIBILITY or EXTRA."
                )
            )
        grid_path, grid_layer = self.vector_file(parameters, self.GRID, context, feedback)
        options = {
            "grid_path": grid_path,
            "grid_layer": grid_layer,
            "id_field": self.parameterAsString(parameters, self.ID_FIELD, context) or CELL_ID,
            "inputs": inputs,
            "output_path": output,
            "resolution": self.parameterAsDouble(parameters, self.RESOLUTION, context),
            "chip_size": self.parameterAsInt(parameters, self.CHIP_SIZE, context) or None,
            "max_nodata": self.parameterAsDouble(parameters, self.MAX_NODATA, context),
            "nodata_grid_path": nodata_grid,
            "style_qml_path": style_path("chip_nodata"),
            **engine_options(self, parameters, context),
        }
        feedback.pushInfo(f"Sampling {', '.join(spec['name'] for spec in inputs)} into {output}")
        # The partial store is kept on cancel or error: the next run with the same parameters resumes it.
        try:
            summary = self.run_core_step(
                "sample_chips", options, feedback, outputs=[nodata_grid] if nodata_grid else []
            )
        except QgsProcessingException:
            if not feedback.isCanceled():
                raise
            # The runner's "no output was written" would contradict the partial store kept for resuming.
            feedback.pushInfo(
                "The cells sampled so far are kept: run again with the same parameters to continue where this run stopped."
            )
            partial = partial_store_path(output)
            raise QgsProcessingException(
                self.tr(
                    f"Cancelled: the chip store {output} is not complete, so it is not published yet; "
                    f"the cells sampled so far are kept beside it in the hidden folder {partial} "
                    f"({_folder_size_text(partial)}), and the next run with the same parameters "
                    "continues from them. Not running again? Delete that folder to free the space "
                    "(nothing else uses it)."
                    + (" No nodata grid was written." if nodata_grid else "")
                )
            ) from None
        results = {
            self.OUTPUT: summary["output"],
            self.CELLS: summary["cells"],
            self.SAMPLED: summary["sampled"],
            self.RESUMED_CELLS: summary["resumed_cells"],
            self.FLAGGED: summary["flagged"],
        }
        if nodata_grid:
            results[self.NODATA_GRID] = nodata_grid
            name_output(
                nodata_grid,
                context,
                self.tr("Chip nodata"),
                input_layer_name(self, parameters, self.GRID, context),
            )
        return results


def _folder_size_text(folder):
    """'1.2 GB' (or MB, kB) of the files under ``folder``; 'size unknown' when it cannot be read."""
    total = 0
    try:
        for root, _, files in os.walk(folder):
            total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    except OSError:
        return "size unknown"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if total >= size:
            return f"{total / size:.1f} {unit}"
    return f"{total} bytes"


def add_raster_parameters(algorithm):
    """DAYTIME (with DAYTIME_BANDS), NIGHTLIGHTS, ACCESSIBILITY and EXTRA: the rasters chips come from."""
    for name, _, label in NAMED_INPUTS:
        algorithm.add_parameter(
            QgsProcessingParameterRasterLayer(name, algorithm.tr(label), optional=True)
        )
        if name == algorithm.DAYTIME:
            algorithm.add_parameter(
                QgsProcessingParameterString(
                    algorithm.DAYTIME_BANDS,
                    algorithm.tr("Daytime bands (red, green, blue)"),
                    "1,2,3",
                ),
            )
    algorithm.add_parameter(
        QgsProcessingParameterMultipleLayers(
            algorithm.EXTRA,
            algorithm.tr("Extra rasters"),
            QgsProcessing.SourceType.TypeRaster,
            optional=True,
        )
    )


def add_resampling_parameters(algorithm):
    """<RASTER>_RESAMPLING for each raster parameter of ``add_raster_parameters`` (advanced)."""
    for name, _, label in NAMED_INPUTS + [(algorithm.EXTRA, None, "Extra rasters")]:
        algorithm.add_parameter(
            QgsProcessingParameterEnum(
                resampling_id(name),
                algorithm.tr("{}: resampling").format(label.split(" (")[0]),
                list(RESAMPLING_METHODS),
                False,
                1,
            ),
            advanced=True,
        )


def raster_inputs(algorithm, parameters, context):
    """The chip inputs ([{name, path, bands, parameter, label, resampling}]) of the rasters given."""
    inputs = []
    for name, store_name, label in NAMED_INPUTS:
        path = algorithm.raster_file(parameters, name, context)
        if not path:
            continue
        bands = _daytime_bands(algorithm, parameters, context) if name == algorithm.DAYTIME else [1]
        inputs.append(
            {
                "name": store_name,
                "path": path,
                "bands": bands,
                "parameter": name,
                "label": label.split(" (")[0],  # names the input in messages
                "resampling": _resampling(algorithm, parameters, name, context),
            }
        )
    for layer in algorithm.parameterAsLayerList(parameters, algorithm.EXTRA, context):
        path = algorithm.raster_layer_file(layer, algorithm.EXTRA)
        inputs.append(
            {
                "name": _store_name(layer.name(), [spec["name"] for spec in inputs]),
                "path": path,
                "bands": list(range(1, layer.bandCount() + 1)),
                "parameter": algorithm.EXTRA,
                "label": f"Extra raster '{layer.name()}'",
                "resampling": _resampling(algorithm, parameters, algorithm.EXTRA, context),
            }
        )
    return inputs


def _daytime_bands(algorithm, parameters, context):
    text = algorithm.parameterAsString(parameters, algorithm.DAYTIME_BANDS, context) or "1,2,3"
    try:
        bands = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        bands = []
    if not bands or any(band < 1 for band in bands):
        raise QgsProcessingException(
            algorithm.tr(
                f"{algorithm.DAYTIME_BANDS}: '{text}' is not a list of band numbers such as 1,2,3 or 4,3,2."
            )
        )
    return bands


def _resampling(algorithm, parameters, name, context):
    return RESAMPLING_METHODS[algorithm.parameterAsEnum(parameters, resampling_id(name), context)]


def _store_name(layer_name, taken):
    """A file-safe, unique input name from a layer name."""
    base = (
        "".join(
            character if (character.isascii() and character.isalnum()) or character in "-_" else "_"
            for character in layer_name
        )
        .strip("_-")
        .lower()
        or "extra"
    )
    name, number = base[:56], 2  # room for a suffix within the store's 64 characters
    base = name
    while (
        name in taken
        or name.lower() in RESERVED_NAMES
        or name in ("daytime", "nightlights", "accessibility")
    ):
        name, number = f"{base}_{number}", number + 1
    return name
