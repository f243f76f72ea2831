"""Help of povmap:buildtraininggrid; docs/algorithms/buildtraininggrid.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Turns household survey points into labelled cells aligned to multiples of the cell size "
    "(1 km² by default). Cleans the survey as the paper did (score 0, poor GPS accuracy, surveys "
    "before a date, urban centres, points outside the districts), then writes per cell the number "
    "of households, their median score and the label (1 = chronically poor). Household points are "
    "never written; cells with fewer than MIN_OBS households never appear in the output."
)

INPUT = "One point per surveyed household, in any CRS."

SCORE_FIELD = (
    "Numeric score of each household, e.g. the Simple Poverty Scorecard (0–100, higher = richer); "
    "default: the field named score. Not an id such as fid. NULL scores are skipped and counted."
)

CELL_SIZE = "Side of the square cells in metres of the grid CRS. Cells are aligned to multiples of it, so grids of the same CRS and cell size share cell ids."

CUTOFF = "A cell is poor when its median score is below this value (Simple Poverty Scorecard: 0–18 chronically poor, 19 and above not)."

POOR_BELOW = "Checked: label 1 when the median is strictly below CUTOFF (a median equal to the cutoff is not poor). Unchecked: label 1 when the median is strictly above CUTOFF, for deprivation scores where higher means poorer."

MIN_OBS = "Cells with fewer households are dropped and never appear in any output, so no household can be singled out. At least 3: in a cell of two, each household could work out the other's score. Households are counted once each (see HOUSEHOLD_FIELD)."

HOUSEHOLD_FIELD = "Each household's id: MIN_OBS and MAX_OBS count distinct ids, and a household's repeated rows count once. Empty: rows with identical coordinates and score are one household."

MAX_OBS = "Cells with this many households or more are dropped as de-facto urban (the paper dropped cells of 300+)."

DROP_ZERO = "A score of exactly 0 is almost always a data-entry error in scorecard surveys."

ACCURACY_FIELD = "Reported GPS error of each point in metres. Points with a larger error than MAX_ACCURACY, or none recorded, are dropped."

MAX_ACCURACY = "Points whose GPS error is larger than this are dropped (used with ACCURACY_FIELD)."

DATE_FIELD = "Date of each interview (a date field or text as YYYY-MM-DD)."

MIN_DATE = "Households surveyed before this date (or with no readable date) are dropped (used with DATE_FIELD), e.g. to match the imagery's year."

URBAN = "Polygons of urban centres; households inside are dropped (the model maps rural poverty). Invalid polygons are repaired."

DISTRICTS = "District polygons. Households outside every district are dropped and counted; each cell takes the district of most of its households."

DISTRICT_FIELD = "Field of DISTRICTS holding the district name, written to the grid's district field (used by district cross-validation)."

CRS = "A projected CRS in metres for the cells, whose area of use contains the survey and whose metres are ground metres there (not Web Mercator). Empty: the UTM zone at the median of the households (logged; households far from the others are named in a warning)."

OUTPUT = (
    "GeoPackage of cells with cell_id, district, n_obs, median_score and label (1 = poor), styled by "
    "label: the training grid for Train, or the ground truth for Evaluate when the survey is a new "
    "one. It loads named after the survey (Labelled grid: <survey layer>)."
)
