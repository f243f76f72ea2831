"""A QGIS session like the test session's, whose failed algorithm keeps Python-owned layers
alive in its exception's frames; run by tests/test_session_exit.py in a fresh Python:
``python exit_check.py BUILD_DIR SURVEY_GPKG RASTER OUTPUT_DIR release|keep``. Prints how many
such layers were alive before QGIS exits and ends with ``exited`` when the interpreter got
that far; its exit status is the interpreter's (a crash in teardown shows)."""

import faulthandler
import os
import sys

faulthandler.enable()
build, survey, raster, folder, mode = sys.argv[1:6]
sys.path.insert(0, build)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append("/usr/share/qgis/python/plugins")  # QGIS's own Processing package

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsMapLayer,
    QgsProcessingException,
    QgsRasterLayer,
    QgsVectorLayer,
)

application = QgsApplication([], False)
application.initQgis()
import processing  # noqa: E402
from processing.core.Processing import Processing  # noqa: E402
from qgis.PyQt import sip  # noqa: E402

from povmap_qgis.processing.provider import PovmapProvider  # noqa: E402

Processing.initialize()
provider = PovmapProvider()
QgsApplication.processingRegistry().addProvider(provider)


def fail_with_own_layers(index):
    """A survey layer and a raster layer made here (Python owns them) given to a run that fails."""
    points = QgsVectorLayer(survey, "survey", "ogr")
    lights = QgsRasterLayer(raster, "lights", "gdal")
    try:
        processing.run(
            "povmap:buildtraininggrid",
            {
                "INPUT": points,
                "SCORE_FIELD": "no_such_field",
                "OUTPUT": os.path.join(folder, f"never_{index}.gpkg"),
            },
        )
    except QgsProcessingException as error:
        return error, lights
    raise AssertionError("the run was expected to fail")


kept = [fail_with_own_layers(index) for index in range(3)]
del kept
import gc  # noqa: E402

gc.collect()
alive = sum(
    1
    for thing in gc.get_objects()
    if isinstance(thing, QgsMapLayer) and not sip.isdeleted(thing) and sip.ispyowned(thing)
)
print(f"alive {alive}", flush=True)
if mode == "release":
    from qgis_helpers import release_python_owned_layers

    print(f"released {release_python_owned_layers()}", flush=True)
QgsApplication.processingRegistry().removeProvider(provider)
application.exitQgis()
print("exited", flush=True)
