"""Help of povmap:districtestimates; docs/algorithms/districtestimates.md says the same in more words.

Its SUMMARY, then each parameter's help under the parameter's id, in the dialog's order.
"""

SUMMARY = (
    "What a statistics office publishes: the poverty rate of every district (any admin level) with "
    "its error. The survey's own (direct) estimate of each district — the weighted share of poor "
    "households, with its design-based standard error — is combined with the poverty map's district "
    "mean in a Fay–Herriot small area model: each estimate lies between the survey and the map, "
    "weighted by how reliable each is. Districts without survey households get the map's (synthetic) "
    "estimate. Writes the districts with direct, estimate, MSE, standard error, CV, 95 % interval, "
    "shrinkage factor gamma, a publishable flag (CV at most CV_THRESHOLD) and people in poverty "
    "(styled: publishable districts by estimate, the others grey and hatched), the same as CSV, and an "
    "HTML report: the plain summary, direct against estimate, CV before and after, the model's fit "
    "and a map. Household points are never written."
)

SURVEY = (
    "The household survey points Build training grid takes (any CRS). Read for their score, "
    "weight, cluster and stratum; never written out."
)

SCORE_FIELD = (
    "Numeric score of each household (e.g. the Simple Poverty Scorecard). Households without "
    "a score are left out and counted."
)

CUTOFF = (
    "A household is poor when its score is below this value (the labelling rule of Build "
    "training grid, applied to each household)."
)

POOR_BELOW = (
    "Checked: poor when the score is strictly below CUTOFF. Unchecked: poor when strictly "
    "above, for deprivation scores where higher means poorer."
)

WEIGHT_FIELD = (
    "Each household's sampling weight (households it represents). Empty: equal weights. "
    "Every weight must be positive."
)

CLUSTER_FIELD = (
    "The survey's primary sampling unit (enumeration area) of each household, for the "
    "design-based variance. Empty: the households of one grid cell of CELL_SIZE form a cluster."
)

STRATUM_FIELD = (
    "The survey's stratum of each household; clusters are taken within their stratum. Empty: "
    "one stratum. A stratum with a single cluster adds no variance (the report says so)."
)

CELL_SIZE = (
    "Without CLUSTER_FIELD, households of one cell of this size (aligned as the training grid) "
    "form a cluster."
)

DISTRICTS = (
    "The areas to publish, at any admin level (districts, sub-districts). Polygons sharing a "
    "name are one district."
)

DISTRICT_FIELD = "The field of DISTRICTS holding each district's name."

PREDICTIONS = (
    "A prediction layer from Predict poverty (calibrated prob_mean) covering the districts. A "
    "cell belongs to the district holding its centre. Districts without predicted cells get no "
    "map value: the survey alone (or no estimate)."
)

OUT_OF_FOLD = (
    "The grid written by Cross-validate by district (OUTPUT_GRID): its out-of-fold prob_mean "
    "replaces the predictions of the cells it covers. The model was trained on the survey's own "
    "cells; a map value computed from in-sample predictions looks better there than it is and "
    "the model then trusts the map too much."
)

POPULATION = (
    "People per pixel, any CRS (e.g. WorldPop): summed per cell as Target a budget does; the "
    "map's district value is then the population-weighted mean of prob_mean, and population and "
    "poor_people are filled. Empty: every cell weighs the same."
)

TRANSFORM = (
    "none: model the shares directly. arcsin: model arcsin(√share), whose variance depends only "
    "on the effective sample size (better for shares near 0 or 1, and for districts with few "
    "households), back-transformed with a bias correction (E[sin² θ] under N(EBLUP, g1), θ held in "
    "[0, π/2]); its MSE then comes from the bootstrap."
)

MSE = (
    "analytical: the Prasad–Rao formula (Datta–Lahiri's form for REML: g1 + g2 + 2 g3; "
    "synthetic estimates σ²u + g2), fast. bootstrap: the parametric bootstrap (González-Manteiga "
    "et al. 2008; BOOTSTRAP_DRAWS draws, SEED), slower, also for arcsin."
)

BOOTSTRAP_DRAWS = (
    "Draws of the parametric bootstrap (MSE bootstrap, or TRANSFORM arcsin). 200 is usual; more "
    "makes the MSE steadier."
)

SEED = "Seed of the bootstrap draws: the same seed gives the same MSEs."

BENCHMARK = (
    "national: multiply every estimate (and its error) by one factor so that their "
    "population-weighted mean (cell counts without POPULATION) equals the survey's national "
    "direct estimate, as published figures must add up. Estimates are held at most 1."
)

VARIANCES = (
    "direct: each district keeps its own design variance (the generalised variance function "
    "only where it has none: all or none poor, one cluster). smoothed: every district takes "
    "the variance its number of households implies (design effect × p̄(1 − p̄) / households): "
    "the model takes the variances as known, and a district's own variance from 2–5 clusters "
    "is itself noisy, sometimes far too small, which makes intervals too narrow."
)

CV_THRESHOLD = (
    "A district is publishable when its coefficient of variation (standard error / estimate) is "
    "at most this (0.2 = 20 %, a common rule of statistics offices)."
)

OUTPUT = (
    "GeoPackage of the districts with district, households, clusters, direct, direct_se, "
    "direct_cv, variance_smoothed, covariate (the map's value), estimate, mse, se, cv, low, high "
    "(95 %), gamma, in_sample, publishable, population, poor_people, poor_people_low and "
    "poor_people_high; styled by estimate, non-publishable districts grey and hatched, labelled "
    "with name and estimate (* = not publishable); a CV style is in the layer's Styles menu."
)

TABLE = "The same fields as OUTPUT, one row per district, without geometries."

REPORT = (
    "One self-contained HTML file: the plain summary first, direct against estimate with "
    "intervals, CV before and after, shrinkage, the model's fit (σ²u, β with standard errors, R², "
    "normality test), every district, maps of the estimates and of the CV, the method and "
    "settings, and the warnings."
)
