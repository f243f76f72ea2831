"""Help of povmap:verificationresults; docs/algorithms/verificationresults.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

from ...core.verification.verification_results import (
    MIN_RECALIBRATION_PER_CLASS,
    MIN_RECALIBRATION_VISITS,
)

SUMMARY = (
    "Turns the field visits of a verification sample into estimates a manager can sign: the share of the "
    "map's poor cells that are poor (precision, user's accuracy), the share of the poor cells the map "
    "finds (recall, producer's accuracy), the overall accuracy, the share of poor cells (and of poor "
    "people) and the map's bias, each with a 95 % interval from the sample's design (Olofsson et al. "
    "2014), beside what a random choice of cells would do; for a sample of a targeting output, the "
    "inclusion and exclusion errors. The returns are the edited sample (QField) or the CSV/XLSX export "
    "of ODK Central or KoBoToolbox, matched by cell id; unknown ids, cells returned twice and impossible "
    "counts are refused, missing visits listed. Optionally refits the model's calibration on the "
    "visited cells into a new model package."
)

SAMPLE = (
    "The layer written by Draw a verification sample (or the copy QField edited): its design "
    "(strata, cells per stratum, weights) is read from the layer and checked; a layer whose weights, "
    "strata or cells were changed is refused."
)

RETURNS = (
    "What came back: the CSV or XLSX export of ODK Central or KoBoToolbox (columns may carry the "
    "form's group, visit/observed_poor or visit-observed_poor), or a GeoPackage edited in QField. "
    "Empty: the visit fields of SAMPLE itself. One return per cell; a cell without a usable return "
    "is a missing visit (listed in the report)."
)

ID_FIELD = (
    "The column of RETURNS holding the cell id (with or without a group prefix); empty: the sample's "
    "cell id field (cell_id on povmap's grids), the name the form uses."
)

OBSERVED_FIELD = (
    "The column saying whether the cell is poor: 1/0, yes/no or true/false. Empty in a row: poor "
    "when households_poor is more than half of households_visited (both given), else not visited."
)

POPULATION = (
    "People per pixel: the share of poor people is then estimated (people in poor cells). Empty: the "
    "people the sample recorded when it was drawn with POPULATION, if any."
)

RECALIBRATE = (
    "The model package whose predictions were sampled. Its calibration (Platt scaling) is refitted "
    "on the visited cells' prob_raw and observed class, each weighted by its design weight, and "
    f"written as NEW_MODEL; needs at least {MIN_RECALIBRATION_VISITS} visited cells with "
    f"{MIN_RECALIBRATION_PER_CLASS} of each class. The package itself is never changed."
)

OUTPUT = (
    "The sample with observed_poor and outcome (hit, miss, false_alarm, correct_rejection, "
    "not_visited), styled like Evaluate's hit/miss layer."
)

METRICS = (
    "overall_accuracy, users_accuracy_poor, producers_accuracy_poor, poor_share (and "
    "poor_people_share, map_bias, inclusion_error, exclusion_error where they apply), each "
    "{estimate, se, low, high}, the error matrix, the per-stratum table, the visits and random (the "
    "margins over a random choice of cells); a CSV "
    "with one row per estimate is written beside it."
)

REPORT = (
    "One self-contained HTML file: a plain summary first, the estimates beside a random choice, "
    "the error matrix, the strata, a map of the outcomes."
)

NEW_MODEL = (
    "Folder of the new model package (.povmodel is added if missing); its manifest records the "
    "parent package, the sample and the visits (lineage). Never the package of RECALIBRATE."
)
