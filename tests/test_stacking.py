"""Issue 21: the ensemble's probability is the combination its out-of-fold evidence supports.

The combiner (core/model/stacking.py) against scikit-learn and the written-out optimality
conditions; synthetic out-of-fold matrices with a known answer over many seeds (noise members,
signal members, a member that memorises its training cells)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from povmap_qgis.core.model import stacking


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-values))


def synthetic_case(cells, seed, signal=0.0, members=3):
    """Out-of-fold candidates of ``cells`` cells: a baseline that sees the statistics' part of
    the truth and ``members`` members that carry noise (``signal`` 0) or also see a part the
    statistics cannot (texture inside the chip), with weight ``signal`` in the truth."""
    rng = np.random.default_rng(seed)
    statistics, texture = rng.normal(size=cells), rng.normal(size=cells)
    labels = (rng.random(cells) < sigmoid(1.2 * statistics + signal * texture - 0.4)).astype(int)
    candidates = {"baseline": sigmoid(statistics + rng.normal(0, 0.3, cells))}
    for number in range(members):
        if signal:
            logit = 0.8 * texture + 0.5 * statistics + rng.normal(0, 0.5, cells)
        else:
            logit = rng.normal(0, 1, cells)
        candidates[f"member{number}"] = sigmoid(logit)
    return candidates, labels


def penalised_loss(parameters, matrix, labels, c=stacking.C):
    """The written-out objective: negative log likelihood + ||w||² / (2C), intercept free."""
    z = parameters[0] + matrix @ parameters[1:]
    return np.sum(np.logaddexp(0, z) - labels * z) + np.sum(parameters[1:] ** 2) / (2 * c)


def test_the_fit_equals_scikit_learns_penalised_logistic_regression_when_all_weights_are_positive():
    candidates, labels = synthetic_case(400, 1, signal=1.5)
    fitted = stacking.fit(candidates, labels, "validation cells")
    matrix = np.column_stack([stacking.logits(candidates[name]) for name in fitted["candidates"]])
    reference = LogisticRegression(C=stacking.C, tol=1e-12, max_iter=100000).fit(matrix, labels)
    assert min(reference.coef_[0]) > 0  # the constraint is not active here
    np.testing.assert_allclose(fitted["weights"], reference.coef_[0], atol=1e-6)
    assert fitted["intercept"] == pytest.approx(reference.intercept_[0], abs=1e-6)
    np.testing.assert_allclose(
        stacking.combine(fitted, candidates), reference.predict_proba(matrix)[:, 1], atol=1e-6
    )
    assert fitted["method"] == stacking.METHOD and fitted["cells"] == 400
    assert fitted["fitted_on"] == "validation cells" and fitted["C"] == stacking.C


def test_with_a_candidate_against_the_evidence_its_weight_is_zero_and_the_rest_is_scikit_learns():
    """Karush–Kuhn–Tucker, checked independently: the weights held at 0 would only raise the
    penalised loss if increased, and the others are scikit-learn's fit without those candidates."""
    candidates, labels = synthetic_case(500, 3, signal=1.5, members=2)
    candidates["reversed"] = 1 - candidates["member0"]  # ranks cells against the evidence
    fitted = stacking.fit(candidates, labels, "validation cells")
    weights = dict(zip(fitted["candidates"], fitted["weights"], strict=True))
    assert weights["reversed"] == 0.0
    kept = [name for name in fitted["candidates"] if weights[name] > 0]
    matrix = np.column_stack([stacking.logits(candidates[name]) for name in kept])
    reference = LogisticRegression(C=stacking.C, tol=1e-12, max_iter=100000).fit(matrix, labels)
    np.testing.assert_allclose([weights[name] for name in kept], reference.coef_[0], atol=1e-6)
    assert fitted["intercept"] == pytest.approx(reference.intercept_[0], abs=1e-6)
    # the derivative of the written-out loss in the zero weight's direction is not negative
    full = np.column_stack([stacking.logits(candidates[name]) for name in fitted["candidates"]])
    parameters = np.array([fitted["intercept"], *fitted["weights"]])
    step = np.zeros_like(parameters)
    step[1 + fitted["candidates"].index("reversed")] = 1e-4
    assert penalised_loss(parameters + step, full, labels) > penalised_loss(
        parameters, full, labels
    )


def test_noise_members_get_about_no_weight_and_the_map_ranks_as_the_baseline():
    """30 seeds, 1,000 out-of-fold cells to fit on, 5,000 new cells to judge on."""
    differences, shares = [], []
    for seed in range(30):
        candidates, labels = synthetic_case(1000, seed)
        fitted = stacking.fit(candidates, labels, "inner out-of-fold cells")
        new, new_labels = synthetic_case(5000, 1000 + seed)
        differences.append(
            roc_auc_score(new_labels, stacking.combine(fitted, new))
            - roc_auc_score(new_labels, new["baseline"])
        )
        shares.append(1 - fitted["contributions"]["baseline"])
    # measured: mean difference -0.0007 (worst seed -0.009), noise share of the signal 0.06
    assert abs(np.mean(differences)) < 0.005, differences
    assert min(differences) > -0.015, differences
    assert np.mean(shares) < 0.1, shares


def test_members_that_see_what_the_statistics_cannot_get_weight_and_beat_the_baseline():
    differences, shares = [], []
    for seed in range(30):
        candidates, labels = synthetic_case(300, seed, signal=1.0)
        fitted = stacking.fit(candidates, labels, "validation cells")
        new, new_labels = synthetic_case(5000, 1000 + seed, signal=1.0)
        differences.append(
            roc_auc_score(new_labels, stacking.combine(fitted, new))
            - roc_auc_score(new_labels, new["baseline"])
        )
        shares.append(1 - fitted["contributions"]["baseline"])
    # measured: AUC +0.076 on average (every seed > +0.06), members' share 0.67
    assert min(differences) > 0.03, differences
    assert min(shares) > 0.4, shares


def test_a_member_that_memorises_its_training_cells_gets_weight_only_if_fitted_in_sample():
    """The memoriser looks its training cells up by id (their label, confidently) and guesses
    elsewhere. Fitted on predictions for cells it did not train on, it gets no weight and the
    map ranks new cells as the baseline; fitted on its own training cells it takes the weight
    and the map is worse than the baseline on new cells."""
    out_of_fold, in_sample = [], []
    for seed in range(20):
        rng = np.random.default_rng([seed, 21])
        candidates, labels = synthetic_case(600, seed, members=0)
        memorised = np.where(labels == 1, 0.99, 0.01)
        guess = sigmoid(rng.normal(0, 1, len(labels)))
        new, new_labels = synthetic_case(5000, 1000 + seed, members=0)
        new["memoriser"] = sigmoid(np.random.default_rng([seed, 7]).normal(0, 1, len(new_labels)))
        for held_out, found in ((guess, out_of_fold), (memorised, in_sample)):
            fitted = stacking.fit(dict(candidates, memoriser=held_out), labels, "cells")
            found.append(
                (
                    fitted["contributions"]["memoriser"],
                    roc_auc_score(new_labels, stacking.combine(fitted, new))
                    - roc_auc_score(new_labels, new["baseline"]),
                )
            )
    shares, differences = np.array(out_of_fold).T
    assert np.mean(shares) < 0.05 and abs(np.mean(differences)) < 0.005
    shares, differences = np.array(in_sample).T
    assert min(shares) > 0.5 and max(differences) < -0.05


def test_without_a_stacking_the_probability_is_the_members_mean_and_the_baseline_is_ignored():
    candidates = {"a": np.array([0.2, 0.6]), "b": np.array([0.4, 0.8]), "baseline": np.ones(2)}
    for record in (None, {"method": "none", "note": "STACKING=off"}):
        np.testing.assert_allclose(stacking.combine(record, candidates), [0.3, 0.7])
    assert stacking.fit(candidates, [1, 1], "validation cells")["method"] == "none"
    assert "members' mean (STACKING=off)" in stacking.describe(
        {"method": "none", "note": "STACKING=off"}
    )


def test_the_stacking_is_part_of_the_manifest_hash_and_its_numbers_are_checked(tmp_path):
    from povmap_qgis.core.errors import PovmapInputError
    from povmap_qgis.core.model import model_package

    candidates, labels = synthetic_case(200, 0, signal=1.0, members=1)
    found = {"compact_cnn": candidates["member0"], "baseline": candidates["baseline"]}
    fitted = stacking.fit(found, labels, "validation cells")
    manifest = {"members": [{"name": "compact_cnn"}], "baseline": {}, "stacking": fitted}
    before = model_package.manifest_digest(manifest)
    changed = dict(fitted, weights=[value + 0.1 for value in fitted["weights"]])
    assert model_package.manifest_digest(dict(manifest, stacking=changed)) != before

    def refuse(field, what):
        raise PovmapInputError("MODEL", f"{field} {what}")

    def number(value):
        return isinstance(value, (int, float))

    model_package._check_stacking(manifest, refuse, number)
    for bad in (
        dict(fitted, weights=[-1.0] + fitted["weights"][1:]),
        dict(fitted, candidates=["resnet50"] + fitted["candidates"][1:]),
        dict(fitted, intercept="x"),
        dict(fitted, method="magic"),
    ):
        with pytest.raises(PovmapInputError):
            model_package._check_stacking(dict(manifest, stacking=bad), refuse, number)


# --- through the real cross-validation: a member that memorises its training cells ---------------

MEMORISER_RUN = r"""
import json, sys
import numpy as np
from povmap_qgis.core.model import member_fitting
from povmap_qgis.core.progress import Reporter
from povmap_qgis.core.validation.crossvalidation import CrossValidateOptions, crossvalidate

chips, grid, folder, mode = sys.argv[1:5]


class Memoriser:
    '''Looks its training cells up by store row: their label, confidently; 0.5 elsewhere.'''

    def __init__(self, batches):
        self.known = dict(zip(batches.rows.tolist(), batches.labels.tolist()))

    def count_params(self):
        return len(self.known)

    def probabilities(self, rows):
        known = np.array([self.known.get(int(row), -1) for row in rows])
        return np.where(known < 0, 0.5, np.where(known == 1, 0.99, 0.01)).astype("float32")


real_fit, real_predict = member_fitting._fit_member, member_fitting._predict_member


def fit_member(architecture, index, count, inputs, preset, train_data, *rest):
    if architecture == "compact_cnn":  # this slot holds the memoriser
        return Memoriser(train_data), [0.5]
    return real_fit(architecture, index, count, inputs, preset, train_data, *rest)


def predict_member(model, store, rows, normalisation):
    if isinstance(model, Memoriser):
        return model.probabilities(rows)
    return real_predict(model, store, rows, normalisation)


member_fitting._fit_member, member_fitting._predict_member = fit_member, predict_member
summary = crossvalidate(
    CrossValidateOptions(
        chips_path=chips, grid_path=grid, metrics_path=folder + "/cv.json",
        output_grid_path=folder + "/cv.gpkg", members=["compact_cnn", "stats_gbm"],
        folds=3, seed=2, stacking=mode,
    ),
    Reporter(),
)
print(json.dumps({"stacking": summary["stacking"], "verdict": summary["verdict"],
                  "pooled": summary["pooled"]}))
"""


@pytest.mark.slow
def test_a_memorising_member_gets_no_weight_in_the_cross_validation_and_the_verdict_is_no_better(
    tiny_chips, tmp_path
):
    """The memoriser predicts its own training cells perfectly: any stacking fitted on cells the
    members learned from would hand it the weight. Nested and validation-cell stacking fit on
    cells it never saw, so its weight is (about) 0 in every fold and the map is no better than
    the baseline."""
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    for mode in ("nested", "validation"):
        folder = tmp_path / mode
        folder.mkdir()
        completed = subprocess.run(
            [sys.executable, "-c", MEMORISER_RUN, tiny_chips["night"], tiny_chips["grid"]]
            + [str(folder), mode],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"),
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        found = json.loads(completed.stdout.strip().splitlines()[-1])
        for fold, record in found["stacking"]["folds"].items():
            # fitted on its own training cells it would carry nearly all the signal (it
            # separates them perfectly); on cells it never saw it carries none
            assert record["contributions"]["compact_cnn"] < 1e-6, (mode, fold, record)
            assert record["weights"][record["candidates"].index("compact_cnn")] < 1e-6
        images = found["stacking"]["images"]
        assert images["members"] == ["compact_cnn"] and images["share_median"] < 1e-6
        assert found["verdict"]["judgement"] != "better_than_baseline", found["verdict"]
        assert "The image members (compact_cnn) carry" in found["verdict"]["sentence"]


def test_predict_writes_the_stored_stacking_as_prob_raw_and_an_older_package_the_mean():
    """prediction.trust_fields, the one place predict (chips, rasters, Spark) makes prob_raw:
    the stored weights written out by hand, and the members' mean without a stacking."""
    import json

    from povmap_qgis.core.model import calibration
    from povmap_qgis.core.model.prediction import trust_fields
    from povmap_qgis.core.progress import RecordingReporter

    candidates, labels = synthetic_case(600, 5, signal=1.0, members=2)
    members = [candidates["member0"], candidates["member1"]]
    # a baseline stored as plain numbers: one statistic whose logit is the baseline's
    logit = stacking.logits(candidates["baseline"])
    simple = {
        "mean": [0.0],
        "scale": [1.0],
        "coefficients": [1.0],
        "intercept": 0.0,
        "threshold": 0.5,
        "training_range": {"low": [-100.0], "high": [100.0]},  # no drift reference
    }
    fitted = stacking.fit(
        {"cnn_a": members[0], "cnn_b": members[1], "baseline": candidates["baseline"]},
        labels,
        "validation cells",
    )
    manifest = {
        "members": [{"name": "cnn_a"}, {"name": "cnn_b"}],
        "baseline": simple,
        "stacking": fitted,
        "calibration": calibration.fit_platt(
            stacking.combine(fitted, candidates | {"cnn_a": members[0], "cnn_b": members[1]}),
            labels,
        ),
        "manifest_sha256": "-",
    }
    ensemble = {
        "prob_mean": np.mean(members, axis=0),
        "disagreement": np.std(members, axis=0),
        "members": members,
    }
    reporter = RecordingReporter()
    fields, metadata = trust_fields(manifest, logit.reshape(-1, 1), ensemble, reporter)
    z = fitted["intercept"] + sum(
        weight * stacking.logits(values)
        for weight, values in zip(
            fitted["weights"], [members[0], members[1], candidates["baseline"]], strict=True
        )
    )
    assert np.allclose(fields["prob_raw"], 1 / (1 + np.exp(-z)), atol=1e-5)
    assert json.loads(metadata["povmap_stacking"])["weights"] == fitted["weights"]
    assert any(message.startswith("prob_raw: stacked") for message in reporter.infos)

    older = {key: value for key, value in manifest.items() if key != "stacking"}
    reporter = RecordingReporter()
    fields, metadata = trust_fields(older, logit.reshape(-1, 1), ensemble, reporter)
    assert np.allclose(fields["prob_raw"], np.mean(members, axis=0), atol=1e-5)
    assert json.loads(metadata["povmap_stacking"])["method"] == "none"
    assert any("has no stacking" in message for message in reporter.infos)
