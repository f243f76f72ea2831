"""Help of povmap:buildpredictiongrid; docs/algorithms/buildpredictiongrid.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Covers districts or an area of interest with cells for mapping where no survey exists. "
    "Cells use the same alignment and ids as the training grid. Optionally keeps only habitable "
    "cells: those whose mean value of a settlement or population raster reaches a minimum."
)

AREA = (
    "Polygons to cover with cells; every cell that overlaps them with a positive area is kept. "
    "Invalid polygons are repaired."
)

DISTRICT_FIELD = (
    "Field of AREA holding the district name; each cell takes the district it overlaps most."
)

CELL_SIZE = "Side of the square cells in metres; use the training grid's so that ids match."

HABITABLE = "Optional raster file (e.g. built-up fraction or population); cells whose mean is below HABITABLE_MIN, or that it does not cover, are left out."

HABITABLE_BAND = (
    "Band of HABITABLE to average over each cell: its mean per cell is GDAL's average "
    "resampling onto the cell, nodata, NaN and ±inf pixels ignored (whatever nodata value the "
    "raster declares)."
)

HABITABLE_MIN = "Cells whose mean HABITABLE value is below this are left out (used with HABITABLE)."

CRS = "A projected CRS in metres; use the training grid's CRS so that ids match. Empty: the UTM zone at the area's centre."

OUTPUT = (
    "GeoPackage of cells with cell_id and district (and habitable_mean when HABITABLE is used)."
)
