"""Looking at the run history: model aliases and a table of runs (povmap:setmodelalias, povmap:runs).

Both read the store that ``core.history.tracking`` records into (same URI, same
switch). The table has one row per run — or, for a registered model, one row
per version with its run — with ``param.*`` and ``metric.*`` columns, written
as CSV and as a non-spatial GeoPackage table; the HTML report puts the final
metrics of the runs side by side and shows in bold the parameters that differ.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from ..atomic import atomic_output, check_output_path
from ..errors import PovmapCanceledError, PovmapInputError
from ..names import BASELINE, ENSEMBLE, RANDOM
from ..progress import Reporter
from ..report.page import Figure, KeyValues, Paragraph, Section, Table, write_report
from . import mlflow_store, run_contents, tracking

RUN_COLUMNS = (
    "run_id",
    "run_name",
    "step",
    "algorithm",
    "status",
    "started",
    "qgis_version",
    "povmap_version",
    "data_fingerprint",
    "registered_model",
    "parent_run_id",
)
VERSION_COLUMNS = ("model", "version", "aliases", "package")
REPORT_RUNS = 8  # finished runs side by side in the HTML report (the most recent): fits a page
REPORT_METRICS = 40  # metric rows of the report at most (the CSV and table hold every metric)
REPORT_VALUE_CHARS = 60  # a parameter value longer than this is cut in the report
OTHER_RUNS = 10  # runs that did not finish, listed apart (the most recent)
FINISHED = "FINISHED"
# The metrics the comparison shows: the judgement of a model (last key part) of the ensemble,
# baseline or random, the targeting numbers, and the run's top-level counts; never per
# district, per fold, per epoch or per reliability bin.
HEADLINE_METRICS = ("auc", "recall", "precision", "accuracy", "brier", "ece", "n")
HEADLINE_TARGETING = ("coverage", "inclusion_error", "exclusion_error")
DETAIL_PARTS = frozenset({"districts", "folds", "reliability", "reliability_raw", "bins", "roc"})
TABLE_LAYER = "runs"
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"  # as MLflow tags its nested runs


@dataclasses.dataclass
class AliasOptions:
    model_name: str
    version: str
    alias: str = "champion"


@dataclasses.dataclass
class RunsOptions:
    output_csv: str
    output_table: str | None = None  # GeoPackage (non-spatial table "runs")
    report_path: str | None = None  # HTML comparison
    experiment: str = tracking.DEFAULT_EXPERIMENT
    model_name: str | None = None  # the versions of this registered model instead of runs
    step: str | None = None  # only runs of this step (train, predict...)
    max_runs: int = 100


def set_model_alias(options: AliasOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Point ``alias`` (e.g. champion) at a version of a registered model."""
    reporter = reporter or Reporter()
    alias = (options.alias or "").strip()
    if not alias or alias.isdigit() or "/" in alias or "@" in alias:
        raise PovmapInputError(
            "ALIAS", f"'{alias}' cannot be an alias; use a word such as champion."
        )
    client, uri = _client()
    try:
        version = client.get_model_version(options.model_name, str(options.version))
    except Exception as error:
        raise PovmapInputError(
            "VERSION",
            f"version {options.version} of '{options.model_name}' is not in the run history at "
            f"{uri} ({mlflow_store.short_text(error)}).",
        ) from None
    try:
        client.set_registered_model_alias(options.model_name, alias, str(version.version))
    except Exception as error:  # MLflow's own rules: not 'latest', not v1, no spaces, length
        raise PovmapInputError(
            "ALIAS",
            f"'{alias}' cannot be an alias in the run history ({mlflow_store.short_text(error)}); use "
            "a word of letters, digits, '_' and '-' such as champion.",
        ) from None
    reporter.info(
        f"models:/{options.model_name}@{alias} now means version {version.version} "
        f"({version.source})"
    )
    return {
        "model_uri": f"models:/{options.model_name}@{alias}",
        "version": int(version.version),
        "package": version.source,
    }


def list_runs(options: RunsOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """The runs (or model versions) as CSV, GeoPackage table and HTML comparison."""
    reporter = reporter or Reporter()
    check_output_path(options.output_csv, "OUTPUT", (".csv",))
    if options.output_table:
        check_output_path(options.output_table, "OUTPUT_TABLE", (".gpkg",))
    if options.report_path:
        check_output_path(options.report_path, "REPORT", (".html", ".htm"))
    client, uri = _client()
    try:
        if options.model_name:
            rows = _version_rows(client, options.model_name, options.max_runs)
        else:
            rows = _run_rows(client, options.experiment, options.step, options.max_runs)
    except (PovmapInputError, PovmapCanceledError):
        raise
    except Exception as error:  # unreachable server, corrupt or foreign database
        raise PovmapInputError(
            None,
            f"the run history at {uri} cannot be read ({mlflow_store.failure_text(error)}); check "
            f"that it is reachable and is an MLflow store (the plugin setting or "
            f"{mlflow_store.URI_VARIABLE}), or switch the run history off "
            f"({mlflow_store.SWITCH_VARIABLE}=off).",
        ) from None
    reporter.info(f"{len(rows)} {'versions' if options.model_name else 'runs'} in {uri}")
    import pandas as pd

    frame = pd.DataFrame(rows, columns=_columns(rows, bool(options.model_name)))
    with atomic_output(options.output_csv) as partial:
        frame.to_csv(partial, index=False)
    if options.output_table:
        import pyogrio

        with atomic_output(options.output_table) as partial:
            pyogrio.write_dataframe(frame, partial, layer=TABLE_LAYER, driver="GPKG")
    if options.report_path:
        _write_comparison(options, uri, rows, client)
    return {
        "rows": len(rows),
        "output_csv": os.path.abspath(options.output_csv),
        "output_table": options.output_table and os.path.abspath(options.output_table),
        "report": options.report_path and os.path.abspath(options.report_path),
    }


def _client() -> tuple[Any, str]:
    uri = mlflow_store.tracking_uri()
    if uri is None:
        raise PovmapInputError(
            None,
            f"the run history is switched off or not configured (set {mlflow_store.URI_VARIABLE} or "
            f"the plugin setting, and not {mlflow_store.SWITCH_VARIABLE}=off).",
        )
    try:
        return mlflow_store.client_for(uri), uri
    except Exception as error:
        raise PovmapInputError(
            None,
            f"the run history at {uri} cannot be opened ({mlflow_store.failure_text(error)}); check "
            f"the plugin setting or {mlflow_store.URI_VARIABLE}.",
        ) from None


def _run_rows(
    client: Any, experiment_name: str, step: str | None, limit: int
) -> list[dict[str, Any]]:
    """The most recent runs (of ``step``): nested runs only when ``step`` names their kind."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    mlflow_store.close_dead_runs(client, [experiment.experiment_id])  # killed runs: KILLED
    query = f"tags.`povmap.step` = '{step}'" if step else ""
    rows: list[dict[str, Any]] = []
    token = None
    while len(rows) < int(limit):
        page = client.search_runs(
            [experiment.experiment_id],
            query,
            max_results=min(1000, max(100, int(limit))),
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        rows += [
            _run_row(run)
            for run in page
            if step or MLFLOW_PARENT_RUN_ID not in run.data.tags  # folds: with their step only
        ]
        token = page.token
        if not token:
            break
    return rows[: int(limit)]


def _version_rows(client: Any, name: str, limit: int) -> list[dict[str, Any]]:
    versions = client.search_model_versions(f"name='{name}'")
    versions = sorted(versions, key=lambda item: int(item.version), reverse=True)[: int(limit)]
    aliases: dict[str, list[str]] = {}  # search results carry no aliases; the registered model does
    if versions:
        for alias, number in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(number), []).append(alias)
    rows: list[dict[str, Any]] = []
    for version in versions:
        row = {
            "model": name,
            "version": int(version.version),
            "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
            "package": version.source,
        }
        if version.run_id:
            row.update(_run_row(client.get_run(version.run_id)))
        rows.append(row)
    return rows


def _run_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    row = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "step": tags.get("povmap.step"),
        "algorithm": tags.get("povmap.algorithm"),
        "status": run.info.status,
        "started": datetime.datetime.fromtimestamp(
            run.info.start_time / 1000, datetime.UTC
        ).strftime("%Y-%m-%d %H:%M:%S"),
        "qgis_version": tags.get("qgis.version"),
        "povmap_version": tags.get("povmap.version"),
        "data_fingerprint": tags.get("povmap.data_fingerprint"),
        "registered_model": tags.get("povmap.registered_model"),
        "parent_run_id": tags.get(MLFLOW_PARENT_RUN_ID),
    }
    row.update({f"param.{key}": value for key, value in run.data.params.items()})
    row.update({f"metric.{key}": value for key, value in run.data.metrics.items()})
    return row


def _columns(rows: Sequence[dict[str, Any]], versions: bool) -> list[str]:
    fixed = list(VERSION_COLUMNS if versions else ()) + list(RUN_COLUMNS)
    extra = sorted({key for row in rows for key in row} - set(fixed))
    params = [key for key in extra if key.startswith("param.")]
    return fixed + [key for key in extra if key.startswith("metric.")] + params


def _write_comparison(
    options: RunsOptions, uri: str, rows: list[dict[str, Any]], client: Any
) -> None:
    """The HTML comparison: the most recent finished runs side by side, the others apart."""
    shown = [row for row in rows if row.get("status") == FINISHED][:REPORT_RUNS]
    others = [row for row in rows if row.get("status") != FINISHED]
    labels = [_label(row) for row in shown]
    with tempfile.TemporaryDirectory(prefix="povmap-runs-") as folder:
        roc = _roc_section(client, shown, labels, folder)
        _write_report(options, uri, rows, (shown, others), labels, roc)


def headline_metric(key: str) -> bool:
    """Whether metric ``key`` (``metrics.ensemble.auc``, ``cells``) is one the comparison shows."""
    parts = key.split(".")
    if "/" in key or DETAIL_PARTS & set(parts) or len(parts) > 4:
        return False
    if len(parts) == 1:
        return True
    if parts[0] in ("expected", "measured") and parts[-1] in HEADLINE_TARGETING:
        return True
    judged = parts[-2] if parts[-1] in ("median", "pooled") else parts[-1]
    return judged in HEADLINE_METRICS and bool({ENSEMBLE, BASELINE, RANDOM} & set(parts))


def report_number(value: Any) -> Any:
    """A metric as the report prints it: whole numbers (counts) without decimals."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _roc_section(
    client: Any, shown: Sequence[dict[str, Any]], labels: Sequence[str], folder: str
) -> Section:
    """The ensemble's ROC curve of every shown run that stored one, overlaid (a Section)."""
    from ..report import figures

    curves = {}
    for row, label in zip(shown, labels, strict=True):
        curve = _stored_roc(client, row.get("run_id"), folder).get(ENSEMBLE)
        if curve:
            curves[label] = curve
    if not curves:
        return Section(
            "ROC curves", [Paragraph("None of these runs stored ROC curves (roc/roc.json).")]
        )
    path = figures.save(
        figures.overlaid_roc_figure(curves, "Ensemble ROC curves of the runs compared"),
        os.path.join(folder, "roc_runs.png"),
    )
    table = Table(
        ["run", "AUC of the drawn curve", "points"],
        [[label, curve["auc"], len(curve["fpr"])] for label, curve in curves.items()],
        caption=f"{len(curves)} of {len(shown)} runs stored ROC curves (train: holdout cells; "
        "evaluate: the cells with a label; crossvalidate: out of fold).",
    )
    figure = Figure(path, "The ensemble's ROC curve of each run", "ROC curves of the runs")
    return Section("ROC curves", [figure, table])


def _stored_roc(client: Any, run_id: str | None, folder: str) -> dict[str, Any]:
    """{model: {fpr, tpr, auc}} from a run's ``roc/roc.json``; {} when it stored none."""
    artifact = run_contents.ROC_ARTIFACT
    if not run_id:
        return {}
    stored = {item.path for item in client.list_artifacts(run_id, os.path.dirname(artifact))}
    if artifact not in stored:
        return {}
    target = os.path.join(folder, run_id)
    os.makedirs(target, exist_ok=True)
    with open(client.download_artifacts(run_id, artifact, target), encoding="utf-8") as handle:
        return json.load(handle).get("curves") or {}


def _write_report(
    options: RunsOptions,
    uri: str,
    rows: list[dict[str, Any]],
    runs: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    labels: list[str],
    roc: Section,
) -> None:
    shown, others = runs
    every_metric = sorted({key for row in shown for key in row if key.startswith("metric.")})
    metric_keys = [key for key in every_metric if headline_metric(key[len("metric.") :])]
    left_out = len(every_metric) - len(metric_keys[:REPORT_METRICS])
    metric_keys = metric_keys[:REPORT_METRICS]
    param_keys = sorted({key for row in shown for key in row if key.startswith("param.")})
    metric_rows = [
        [key[len("metric.") :]] + [report_number(row.get(key)) for row in shown]
        for key in metric_keys
    ]
    param_rows = [
        [key[len("param.") :]] + [_short_value(row.get(key)) for row in shown] for key in param_keys
    ]
    differing = [row for row in param_rows if len(set(row[1:])) > 1]
    what = f"versions of '{options.model_name}'" if options.model_name else "runs"
    metric_caption = "Final value of each metric; counts as whole numbers."
    if left_out:
        metric_caption += (
            f" {left_out} more (per district, per fold, per epoch, reliability bins…) are in the "
            "CSV and the GeoPackage table."
        )
    sections = [
        Section(
            "What is compared",
            [
                KeyValues(
                    [
                        ("Run history", uri),
                        ("Experiment", options.experiment),
                        ("Listed", f"{len(rows)} {what}"),
                        (
                            "Shown side by side",
                            f"{len(shown)} finished (the most recent); "
                            f"{len(others)} that did not finish are listed apart",
                        ),
                    ]
                )
            ],
        ),
        roc,
        Section(
            "Metrics side by side",
            [Table(["metric", *labels], metric_rows, caption=metric_caption)]
            if metric_rows
            else [Paragraph("No metrics were recorded.")],
        ),
        Section(
            "Parameters",
            [
                Table(
                    ["parameter", *labels],
                    differing,
                    caption=f"The {len(differing)} parameters that differ between them; "
                    f"{len(param_rows) - len(differing)} more are the same in every run shown "
                    "(all are in the CSV).",
                )
            ]
            if differing
            else [
                Paragraph(
                    f"The {len(param_rows)} parameters are the same in every run shown."
                    if param_rows
                    else "No parameters were recorded."
                )
            ],
        ),
    ]
    if others:
        sections.append(
            Section(
                "Runs that did not finish",
                [
                    Table(
                        ["started (UTC)", "step", "status", "run"],
                        [
                            [row.get("started"), row.get("step"), row.get("status"), row["run_id"]]
                            for row in others[:OTHER_RUNS]
                        ],
                        caption="Not compared: KILLED (cancelled), FAILED, or RUNNING (still "
                        "running, or ended without closing its record)"
                        + (
                            f"; {len(others) - OTHER_RUNS} older ones in the CSV."
                            if len(others) > OTHER_RUNS
                            else "."
                        ),
                    )
                ],
            )
        )
    write_report(options.report_path, f"povmap run history: {what}", sections)  # type: ignore[arg-type]  # given


def _short_value(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= REPORT_VALUE_CHARS else text[: REPORT_VALUE_CHARS - 1] + "…"


def _label(row: dict[str, Any]) -> str:
    if "version" in row:
        return f"v{row['version']} ({str(row.get('run_id') or '')[:8]})"
    return f"{row.get('step') or 'run'} {str(row.get('run_id') or '')[:8]}"
