"""Help of povmap:verificationsample; docs/algorithms/verificationsample.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from ...core.verification.design import MIN_PER_STRATUM

SUMMARY = (
    "Draws the cells to check in the field before a programme commits a budget: a stratified random "
    "sample of a prediction layer (strata: the predicted class × how uncertain the cell is, terciles of "
    "its interval's width) or of a targeting output (selected × predicted class). Each stratum gets at "
    f"least {MIN_PER_STRATUM} cells, the rest of the sample in proportion to its cells. Writes the "
    "sampled cells (centre latitude/longitude, stratum, inclusion probability, weight, the map's "
    "prob_mean and pred, and empty visit fields), an XLSForm for ODK Collect / KoBoToolbox listing the "
    "cells, and optionally a QGIS project with the form set up for QField. The design is recorded in the "
    "layer, and Accuracy from the verification turns the returns into accuracy estimates with 95 % "
    "intervals."
)

PREDICTIONS = (
    "A prediction layer from Predict poverty (cell id, prob_mean, pred; prob_low/prob_high for "
    "the uncertainty strata) or the selection written by Target a budget (its selected field makes "
    "the strata selected × class). Cells without a prediction or flagged for too much nodata "
    "(chip_flagged) are never drawn."
)

POPULATION = (
    "People per pixel, any CRS (WorldPop, GHS-POP). Cells where nobody lives are never drawn, each "
    "sampled cell carries its people, and the results then estimate the share of poor people too."
)

SAMPLE_SIZE = (
    "How many cells the field teams can visit. Empty: as many as TARGET_HALF_WIDTH needs. Every "
    f"stratum gets at least {MIN_PER_STRATUM} cells (all of them when it has fewer), which can "
    "make the sample a little larger."
)

TARGET_HALF_WIDTH = (
    "Used when SAMPLE_SIZE is empty: the sample size is the one giving the overall accuracy a 95 % "
    "interval of ± this much (0.08 = ± 8 points) by the textbook formula n = 1.96² p (1 − p) / h², "
    "p the accuracy the calibrated probabilities expect, corrected for the number of cells. The "
    "precision and recall of poor get wider intervals (fewer cells each)."
)

MIN_DISTANCE = (
    "Cells whose centres lie closer than this to a cell already drawn are passed over (a spread-out "
    "sample, fewer cells sharing one visit's conditions). Keep it small against the area: a stratum "
    "that cannot be filled is reported."
)

SEED = "The same seed on the same layer draws the same cells (record it with the campaign)."

OUTPUT = (
    "GeoPackage of the sampled cells, styled by predicted class: id, district, lat/lon of the centre, stratum, "
    "inclusion_probability, weight, prob_mean, pred, the empty visit fields observed_poor, "
    "households_visited, households_poor, visit_date, notes. The design (the strata table: cells, "
    "cells drawn, weights) is recorded in the layer's metadata; do not edit the weights."
)

FORM = (
    "An XLSForm to upload to ODK Central or KoBoToolbox: the cell picked from the sampled cells (a "
    "list, or a map in ODK Collect), GPS point, date, households visited, households judged poor by "
    "the programme's rule, whether the cell is poor, photo, notes. Add your scorecard's questions "
    "inside the 'visit' group; keep these names."
)

FIELD_PROJECT = (
    "A QGIS project holding the sample layer with its form set up for QField (value map for "
    "observed_poor, counts with poor ≤ visited, today's date, design fields read-only). Write it in "
    "the folder of OUTPUT and copy both to the phone, or package it with QFieldSync."
)
