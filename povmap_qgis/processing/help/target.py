"""Help of povmap:target; docs/algorithms/target.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "Turns the poverty map into a decision: a programme can enrol a budget of cells or people, and this "
    "chooses where. Cells are ranked by their probability of being poor, or by the expected number of poor "
    "people (probability × people from a population raster such as WorldPop), and enrolled down the "
    "ranking until the budget is spent, optionally with a floor and a cap on the share of each district. "
    "Writes every cell with rank, selected, population and expected_poor (styled selected / not selected; "
    "one layer that opens at once), the allocation per district (a CSV) and one HTML report: a plain "
    "summary, the expected share of the poor covered, the expected inclusion error (enrolled, not poor) "
    "and exclusion error (poor, left out), the targeting curve against random selection and district "
    "targeting, the allocation and a map. With a ground truth, the measured errors beside the expected "
    "ones."
)

PREDICTIONS = (
    "A prediction layer from Predict poverty (the cells' id, district, prob_mean; prob_baseline and "
    "out_of_range are used when present): on povmap's grids "
    "or on a grid of your own. Cells with an empty prob_mean are kept in the output but never "
    "selected."
)

ID_FIELD = (
    "The cells' unique whole-number id, which breaks ties in the ranking, matches TRUTH and is "
    "kept in OUTPUT; empty: the id field Predict poverty recorded in the layer (the grid's "
    "ID_FIELD; cell_id for povmap's grids), or cell_id."
)

POPULATION = (
    "People per pixel, any CRS and resolution (e.g. WorldPop, GHS-POP). Summed per cell, pixels on a "
    "cell's edge counted by the share of their area inside it. Needed for budgets in people and for "
    "ranking by expected poor people; cells with nobody are never selected."
)

BUDGET_UNIT = (
    "What BUDGET counts: a number of cells or people, or a share of all the cells or people of the "
    "layer. Cells are enrolled whole: one that would overshoot the budget is passed over for smaller "
    "ones further down the ranking."
)

BUDGET = (
    "How many cells or people can be enrolled (BUDGET_UNIT cells or people), or which share of them "
    "(share units: between 0 and 1, 0.3 = 30 %). A budget larger than the area enrols every cell that "
    "can be, with a warning."
)

RANK_BY = (
    "probability: the likeliest poor cells first. expected_poor: the cells expected to hold the most "
    "poor people first (probability × people; needs POPULATION). With a budget in people, probability "
    "covers the most expected poor people per person enrolled; with a budget in cells, expected_poor "
    "does (it favours crowded cells). Ties: the other quantity, then the cell id (ID_FIELD)."
)

DISTRICT_MIN_SHARE = (
    "Every district gets at least this share of its cells (or people, with people budgets) enrolled, "
    "its best cells first, before the rest of the budget follows the ranking (programmes often "
    "guarantee every district something). Between 0 and 1."
)

DISTRICT_MAX_SHARE = (
    "No district gets more than this share of its cells (or people) enrolled. Between 0 and 1, at "
    "least the floor. Caps that leave the budget unreachable select what they allow, with a warning."
)

SKIP_OUT_OF_RANGE = (
    "Cells whose out_of_range field is 1 (inputs unlike anything the model learned from) are never "
    "selected. A layer without that field (an older model package) is used whole, with a warning."
)

TRUTH = (
    "A labelled grid (cell_id, label 1 = poor) from Build training grid: a ground-truth survey or "
    "held-out cells, matched by the cell id (for predictions on a grid of your own: labelled "
    "polygons of that grid holding its id). The report then shows the measured inclusion and "
    "exclusion errors and targeting curve on the cells it covers, beside the expected ones. Read as "
    "Evaluate reads it: text ids and labels of a CSV without .csvt are read as numbers, cells "
    "without a label are left out with a warning; repeated or empty ids and labels other than 0/1 "
    "are refused."
)

OUTPUT = (
    "GeoPackage of every cell of PREDICTIONS plus rank (1 = enrolled first, empty when it cannot be "
    "selected), selected (1/0), population (with POPULATION) and expected_poor (probability × people, "
    "or the probability), styled selected / not selected: one layer, so it opens at once however it is "
    "added. The allocation per district is ALLOCATION."
)

ALLOCATION = (
    "One row per district: cells, cells predicted, people, cells and people selected, expected poor "
    "and expected poor covered, the share of the district and of the budget enrolled. People in "
    "whole people, expected poor to a tenth, shares to four decimals. Opens in QGIS as a table "
    "(drop it on the map or Layer ▸ Add Delimited Text Layer, no geometry) or in a spreadsheet."
)

REPORT = (
    "One self-contained HTML file: the plain summary first, the targeting curves, the expected "
    "numbers beside the measured ones (with TRUTH), the allocation table and a map of the selection with district boundaries rendered by QGIS."
)
