"""Inputs as the worker reads them: files in place, or private copies of what is not a file.

A mixin of ``PovmapAlgorithm`` (base.py): the worker runs in another process and
working directory, so every input becomes an absolute path it can open.
"""

import contextlib
import os
import shutil

from qgis.core import (
    QgsFeatureRequest,
    QgsProcessingException,
    QgsProcessingFeatureSourceDefinition,
    QgsProviderRegistry,
    QgsVectorFileWriter,
)
from qgis.PyQt.QtCore import QUrl

from ..core.run_folders import make_run_folder
from .parameter_values import labelled_error

OGR_FILE_FORMATS = ["gpkg", "shp", "geojson", "json", "fgb", "gml", "kml", "sqlite", "tab", "gdb"]


class InputFiles:
    """Vector, raster, file and CRS inputs of an algorithm (``self`` is a ``PovmapAlgorithm``)."""

    def vector_file(self, parameters, name, context, feedback):
        """(path, layer name) of a vector input as an OGR-readable file, or (None, None).

        File-based layers are read in place. Memory layers, filtered layers and
        "selected features only" are copied to a GeoPackage in this run's private
        folder (``core/run_folders.py``), removed when the run ends, or by the
        next run or plugin load if this one is killed (household points included).
        """
        if parameters.get(name) in (None, ""):
            return None, None
        layer = self.vector_layer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(self.tr(f"{name}: the layer could not be read."))
        value = parameters.get(name)
        selected_only, limit = False, -1
        if isinstance(value, QgsProcessingFeatureSourceDefinition):
            selected_only, limit = value.selectedFeaturesOnly, value.featureLimit
        if not selected_only and limit == -1:
            in_place = _file_read_in_place(layer)
            if in_place:
                return in_place
        return self._export(layer, name, selected_only, limit, context, feedback), name.lower()

    def vector_layer(self, parameters, name, context):
        """The layer of a vector parameter, also when given as "selected features only"."""
        value = parameters.get(name)
        if isinstance(value, QgsProcessingFeatureSourceDefinition):
            reference = value.source.valueAsString(context.expressionContext())
            if isinstance(reference, tuple):  # PyQGIS returns (value, ok)
                reference = reference[0]
            parameters = {**parameters, name: reference}
        return self.parameterAsVectorLayer(parameters, name, context)

    def _export(self, layer, name, selected_only, limit, context, feedback):
        """Copy a layer's features (the selection, up to ``limit``) into this run's private folder."""
        if self._export_folder is None:
            try:
                self._export_folder = make_run_folder()
            except OSError as error:
                raise QgsProcessingException(
                    self.tr(f"{name}: no private temporary folder for a copy of the layer: {error}")
                ) from None
        path = os.path.join(self._export_folder, f"{name.lower()}.gpkg")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName, options.layerName, options.fileEncoding = "GPKG", name.lower(), "UTF-8"
        writer = QgsVectorFileWriter.create(
            path, layer.fields(), layer.wkbType(), layer.crs(), context.transformContext(), options
        )
        if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
            raise QgsProcessingException(
                self.tr(
                    f"{name}: the layer could not be copied for the worker: {writer.errorMessage()}"
                )
            )
        request = QgsFeatureRequest()
        if limit != -1:
            request.setLimit(limit)
        features = (
            layer.getSelectedFeatures(request) if selected_only else layer.getFeatures(request)
        )
        written = writer.addFeatures(features)
        message = writer.errorMessage()
        del writer  # closes the file
        if not written:
            raise QgsProcessingException(
                self.tr(f"{name}: the layer could not be copied for the worker: {message}")
            )
        feedback.pushDebugInfo(f"{name}: copied to {path} (removed when the run ends)")
        return path

    def _remove_private_exports(self):
        if self._export_folder is not None:
            shutil.rmtree(self._export_folder, ignore_errors=True)
            self._export_folder = None

    def raster_file(self, parameters, name, context):
        """Path of a raster input that GDAL can open directly, or None."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if parameters.get(name) not in (None, ""):
                raise QgsProcessingException(
                    self.tr(f"{name}: '{parameters[name]}' is not a raster layer or file.")
                )
            return None
        return self.raster_layer_file(layer, name)

    def raster_layer_file(self, layer, name):
        """Path of a raster layer's file, or a message saying to save the layer as a GeoTIFF."""
        parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
        path, prefix = parts.get("path", ""), parts.get("vsiPrefix", "")
        if layer.providerType() != "gdal" or not os.path.isfile(path):
            raise QgsProcessingException(
                self.tr(
                    f"{name}: the layer '{layer.name()}' is not a raster file (provider '{layer.providerType()}'); "
                    "save it as a GeoTIFF first (right-click ▸ Export ▸ Save As…) and use that file."
                )
            )
        # A raster inside an archive (/vsizip/...) is read in place by GDAL in the worker.
        return (
            f"{prefix}{os.path.abspath(path)}{parts.get('vsiSuffix', '')}"
            if prefix
            else os.path.abspath(path)
        )

    def input_file(self, parameters, name, context):
        """Absolute path of a file or folder parameter: the worker runs in another working directory."""
        path = self.parameterAsFile(parameters, name, context)
        if path and path.startswith("models:/"):
            return path  # a registered model version: the worker resolves it (core/history/tracking.py)
        return os.path.abspath(path) if path else path

    def name_list(self, parameters, name, context):
        """A comma-separated string parameter (members, districts) as a list of trimmed names; [] when empty."""
        return [
            part.strip()
            for part in (self.parameterAsString(parameters, name, context) or "").split(",")
            if part.strip()
        ]

    @staticmethod
    def crs_text(crs):
        if not crs.isValid():
            return None
        return crs.authid() or crs.toWkt()

    def crs_parameter(self, parameters, name, context):
        """The CRS given (authid or WKT), None when empty; one QGIS does not know is refused."""
        crs = self.crs_text(self.parameterAsCrs(parameters, name, context))
        value = parameters.get(name)
        if crs is None and value not in (None, "") and str(value).strip():
            raise QgsProcessingException(
                labelled_error(
                    f"{name}: '{value}' is not a coordinate reference system QGIS knows; give "
                    "a projected CRS in metres (e.g. EPSG:32642) or leave it empty for the UTM "
                    "zone of the data.",
                    self.parameterDefinitions(),
                )
            )
        return crs


@contextlib.contextmanager
def no_gdal_sidecars():
    """GDAL's NAME.aux.xml off (``GDAL_PAM_ENABLED=NO``) for the rasters this thread opens
    meanwhile: QGIS computes statistics when it opens an input raster as a layer, and GDAL
    would keep them in a file beside the user's raster. Thread-local: the rest of QGIS keeps
    its setting. (The worker runs with it off: runner.worker_environment.)"""
    try:
        from osgeo import gdal
    except ImportError:  # no GDAL bindings: nothing to switch
        yield
        return
    previous = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", previous)


def no_gdal_sidecars_in_a_qgis_process_run(arguments):
    """GDAL's NAME.aux.xml off for the whole process when it is ``qgis_process run povmap:…``.

    qgis_process opens a run's input rasters itself, before any of the algorithm's code (so
    ``no_gdal_sidecars`` cannot reach them), and closes them as it exits — when GDAL writes
    the statistics QGIS computed on opening them into a file beside the user's raster. Such
    a process runs one povmap algorithm and ends, so the setting is its alone: other
    qgis_process runs and the desktop keep GDAL's. ``arguments``: the application's command
    line. Returns whether it was set.
    """
    arguments = [str(argument) for argument in arguments]
    if not arguments or not os.path.basename(arguments[0]).startswith("qgis_process"):
        return False
    if "run" not in arguments[1:]:
        return False
    algorithm = arguments.index("run", 1) + 1
    if algorithm >= len(arguments) or not arguments[algorithm].startswith("povmap:"):
        return False
    try:
        from osgeo import gdal
    except ImportError:  # no GDAL bindings: nothing to switch
        return False
    gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
    return True


def _file_read_in_place(layer):
    """(path, layer name) when the worker can read the layer's own file as QGIS shows it, else None.

    The same test as QGIS's own export decision: an OGR file of a known format,
    no subset filter, not inside an archive.
    """
    if layer.providerType() != "ogr" or layer.subsetString() or layer.source().startswith("/vsi"):
        return None
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in OGR_FILE_FORMATS or not os.path.exists(path):
        return None
    return os.path.abspath(path), parts.get("layerName") or None


def layer_path(layer):
    """Absolute path of the file behind a layer, or None (memory, database or web layers)."""
    if layer is None:
        return None
    source = layer.source()
    path = QgsProviderRegistry.instance().decodeUri(layer.providerType(), source).get("path")
    if not path and source.startswith("file:"):
        path = QUrl(source).toLocalFile()  # delimited text: file:///…/truth.csv?type=csv…
    return os.path.abspath(path) if path else None
