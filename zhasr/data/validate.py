"""Validate ingested rows with a Great Expectations suite; failing rows are quarantined with reasons.

The suite is defined here in code and runs in an ephemeral GE context on a
pandas DataFrame: no GE project folder is read or written. Every rule is one
expectation with a human-readable ``description``; a row fails a rule when it
appears in that expectation's ``unexpected_index_list`` (result format
``COMPLETE``, indexed by the ``row`` position and the ``id`` column).

Rules, in suite order:

- audio decodes: ``decode_error`` is null
- clip duration within ``[min_duration_s, max_duration_s]``
- clip not silent: RMS level at least ``min_rms_dbfs``
- normalized text not empty
- normalized text matches ``allowed_text_regex``
- characters per second within ``[min_chars_per_s, max_chars_per_s]``
- id not used by an earlier row
- audio content hash not used by an earlier row
- speaker not already in another split

The last three compare rows with each other. GE's uniqueness expectations flag
every copy of a repeated value, which would quarantine the original along with
its copy, and GE has no expectation for "one split per speaker"; so these are
computed in pandas as boolean flag columns (first occurrence kept, later ones
flagged) and the suite expects each flag to be ``False``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zhasr.config import ValidateParams

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.expectations import Expectation

# GE 1.x falls back to this variable when a context leaves analytics unset; the context below also sets it.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITE_NAME = "zhasr_ingested_rows"
DOCS_SITE_NAME = "zhasr_local_site"
_ROW = "row"  # input position: ids may repeat, so failures are matched back to rows by position
_INDEX_COLUMNS = [_ROW, "id"]
_COLUMNS = (
    "id", "audio", "text", "text_norm", "duration_s", "sample_rate_src", "speaker", "split", "batch",
    "audio_sha256", "decode_error", "rms_dbfs", "sentence_held_out",
)


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of one validation run.

    ``rejected`` pairs each failing row with all its reasons; every reason starts
    with ``<expectation type>(<column>):``, the rule's name (``rules`` lists them
    in suite order). ``results_json`` is GE's suite validation result as plain
    JSON. ``docs_index`` is the Data Docs index page when a site was built.
    """

    accepted: list[dict[str, Any]]
    rejected: list[tuple[dict[str, Any], list[str]]]
    reject_fraction: float
    batch_rejected: bool
    results_json: dict[str, Any]
    docs_index: Path | None = None
    rules: tuple[str, ...] = ()

    def write_data_docs(self, docs_dir: Path) -> Path:
        """Build a GE Data Docs site for this result in ``docs_dir``; returns its index.html."""
        return write_data_docs(self.results_json, docs_dir)


@dataclass(frozen=True)
class ValidatedDataset:
    """The validate stage's report (reports/validate.json): the dataset version every later artifact carries."""

    dataset_md5: str  # DVC's hash of the accepted manifest
    rows: int  # ingested rows validated
    accepted: int
    quarantined: int  # rows moved to quarantine/<batch>/rejected.jsonl with their reasons
    rejected_batches: list[str]  # batches over validate.max_reject_fraction, rejected whole
    splits: dict[str, int]  # accepted rows per split
    reasons: dict[str, int]  # quarantine reasons by rule name (a row may have several)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidatedDataset:
        return cls(**data)


class ValidationError(RuntimeError):
    """An expectation could not be evaluated, so which rows fail it is unknown."""


@dataclass(frozen=True)
class _Rule:
    expectation: Expectation
    detail: Callable[[dict[str, Any]], str]  # why one row (a frame record) fails, with its values

    @property
    def name(self) -> str:
        return f"{self.expectation.expectation_type}({self.expectation.column})"


def _rules(o: ValidateParams) -> list[_Rule]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def duration(r: dict[str, Any]) -> str:
        side = "too short" if r["duration_s"] < o.min_duration_s else "too long"
        return f"clip {side}: {r['duration_s']:.3f} s, allowed {o.min_duration_s}-{o.max_duration_s} s"

    def rate(r: dict[str, Any]) -> str:
        side = ("too slow, label too short for the clip" if r["chars_per_s"] < o.min_chars_per_s
                else "too fast, label too long for the clip")
        return (f"{r['chars_per_s']:.2f} chars/s ({side}), allowed {o.min_chars_per_s}-{o.max_chars_per_s}; "
                f"{r['n_chars']} chars in {r['duration_s']:.3f} s")

    return [
        _Rule(gxe.ExpectColumnValuesToBeNull(
            column="decode_error", description="Audio must decode: ingest recorded no decode error."),
            lambda r: f"audio does not decode: {r['decode_error']}"),
        _Rule(gxe.ExpectColumnValuesToBeBetween(
            column="duration_s", min_value=o.min_duration_s, max_value=o.max_duration_s,
            description=f"Clip duration must be {o.min_duration_s}-{o.max_duration_s} s."),
            duration),
        _Rule(gxe.ExpectColumnValuesToBeBetween(
            column="rms_dbfs", min_value=o.min_rms_dbfs,
            description=f"Clip must not be silent: RMS level at least {o.min_rms_dbfs} dBFS."),
            lambda r: f"clip is silent: RMS {r['rms_dbfs']:.1f} dBFS, minimum {o.min_rms_dbfs} dBFS"),
        _Rule(gxe.ExpectColumnValueLengthsToBeBetween(
            column="text_norm", min_value=1, description="Normalized text must not be empty."),
            lambda r: f"normalized text is empty (raw label {r['text']!r})"),
        _Rule(gxe.ExpectColumnValuesToMatchRegex(
            column="text_norm", regex=o.allowed_text_regex,
            row_condition=Column("text_norm") != "",  # empty text is the previous rule's failure
            description="Normalized text must use allowed characters only: CJK ideographs, ASCII letters "
                        "and digits, space (the default pattern also requires one ideograph)."),
            lambda r: f"normalized text {r['text_norm']!r} has characters outside allowed_text_regex "
                      "(or, with the default pattern, no CJK ideograph)"),
        _Rule(gxe.ExpectColumnValuesToBeBetween(
            column="chars_per_s", min_value=o.min_chars_per_s, max_value=o.max_chars_per_s,
            description=f"Speaking rate must be {o.min_chars_per_s}-{o.max_chars_per_s} characters per second. "
                        "Computed column: non-space characters of the normalized text / duration."),
            rate),
        _Rule(gxe.ExpectColumnValuesToBeInSet(
            column="id_repeated", value_set=[False],
            description="Ids must be unique. Computed flag column, True where an earlier row has the same "
                        "id (the first row is kept)."),
            lambda r: f"id {r['id']!r} already used by row {r['id_first_row']}"),
        _Rule(gxe.ExpectColumnValuesToBeInSet(
            column="audio_repeated", value_set=[False],
            description="Audio must be unique. Computed flag column, True where an earlier row has the same "
                        "audio_sha256 (the first row is kept)."),
            lambda r: f"same audio (sha256 {r['audio_sha256'][:12]}…) as row {r['audio_first_row']}"),
        _Rule(gxe.ExpectColumnValuesToBeInSet(
            column="speaker_in_other_split", value_set=[False],
            description="A speaker must stay in one split (test clips of held-out sentences excepted). "
                        "Computed flag column, True where the speaker's first row is in another split "
                        "(the first row's split is kept)."),
            lambda r: f"speaker {r['speaker']!r} is in split {r['speaker_first_split']!r} "
                      f"from row {r['speaker_first_row']}, this row is in {r['split']!r}"),
    ]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame, plus the computed columns the suite checks."""
    import pandas as pd

    df = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in _COLUMNS})
    df.insert(0, _ROW, range(len(df)))
    df["id"] = df["id"].astype(str)
    df["text_norm"] = df["text_norm"].fillna("").astype(str).str.strip()
    # Ingest writes 0.0 where nothing decoded: a placeholder, not a measurement (the decode rule reports it).
    decoded = df["decode_error"].isna()
    df["duration_s"] = pd.to_numeric(df["duration_s"], errors="coerce").astype(float).where(decoded)
    # -inf (digital silence) becomes the lowest finite float so that it is compared, not skipped.
    rms = pd.to_numeric(df["rms_dbfs"], errors="coerce").astype(float).clip(lower=-1e9)
    df["rms_dbfs"] = rms.where(decoded)
    df["n_chars"] = df["text_norm"].str.replace(" ", "", regex=False).str.len()
    df["chars_per_s"] = (df["n_chars"] / df["duration_s"]).where((df["duration_s"] > 0) & (df["n_chars"] > 0))

    df["id_first_row"] = df.groupby("id")[_ROW].transform("first")
    df["id_repeated"] = df["id_first_row"] != df[_ROW]
    has_sha = df["audio_sha256"].notna()
    df["audio_first_row"] = df[_ROW].where(~has_sha)  # a row without audio is its own "first"
    df.loc[has_sha, "audio_first_row"] = df[has_sha].groupby("audio_sha256")[_ROW].transform("first")
    df["audio_first_row"] = df["audio_first_row"].astype(int)
    df["audio_repeated"] = df["audio_first_row"] != df[_ROW]
    # A test clip of a held-out sentence may come from a speaker of any split: only the speaker's other
    # clips must share one split.
    held_sentence = df["sentence_held_out"].fillna(False).astype(bool) & (df["split"] == "test")
    by_speaker = df[~held_sentence].groupby("speaker", dropna=False)
    df["speaker_first_row"] = by_speaker[_ROW].transform("first").reindex(df.index).fillna(df[_ROW]).astype(int)
    df["speaker_first_split"] = by_speaker["split"].transform("first").reindex(df.index).fillna(df["split"])
    df["speaker_in_other_split"] = df["split"] != df["speaker_first_split"]
    return df


def _context(docs_dir: Path | None) -> EphemeralDataContext:
    """An in-memory context, analytics and progress bars off, with a filesystem Data Docs site if asked."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites[DOCS_SITE_NAME] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=sites,
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _check_evaluated(result: ExpectationSuiteValidationResult) -> None:
    for r in result.results:
        info = r.exception_info or {}
        if info.get("raised_exception"):
            cfg = r.expectation_config
            raise ValidationError(
                f"{cfg.type}({cfg.kwargs.get('column')}) could not be evaluated: {info.get('exception_message')}")


def replaced_by_corrections(rows: list[dict[str, Any]]) -> dict[int, str]:
    """``{position: reason}`` of the rows a later label replaces: rows cut from a labelled task
    (``label_version``, "<task>@<labelled at>") whose newest label another batch holds, because a person
    corrected it after it was pulled. Every region of the earlier label goes, kept, moved or deleted since.
    The newest is the latest label time (ISO 8601, so it sorts as text), and of one label pulled twice (a
    pull cut short before its ledger), the copy ingested last."""
    newest: dict[str, tuple[str, int]] = {}
    for i, r in enumerate(rows):
        if r.get("label_version"):
            task, _, labelled_at = r["label_version"].partition("@")
            newest[task] = max(newest.get(task, ("", -1)), (labelled_at, i))
    out = {}
    for i, r in enumerate(rows):
        if r.get("label_version"):
            task = r["label_version"].partition("@")[0]
            kept = rows[newest[task][1]]
            if r["batch"] != kept["batch"]:
                out[i] = f"replaced: task {task} was labelled again; batch {kept['batch']} holds its newest label"
    return out


def validate_rows(
    rows: list[dict[str, Any]], params: ValidateParams, docs_dir: Path | None = None,
) -> ValidationReport:
    """Run the suite over ingested ``rows``; split them into accepted and rejected-with-reasons.

    With ``docs_dir``, a GE Data Docs site (index.html, suite page, validation
    page) is built there. Raises ``ValidationError`` when an expectation could
    not be evaluated.
    """
    import great_expectations as gx

    rows = list(rows)
    rules = _rules(params)
    df = _frame(rows)

    context = _context(docs_dir)
    batch_definition = (
        context.data_sources.add_pandas("ingested")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{SUITE_NAME}_check", data=batch_definition, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE_NAME])] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{SUITE_NAME}_checkpoint", validation_definitions=[definition], actions=actions,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": _INDEX_COLUMNS},
    ))
    (result,) = checkpoint.run(batch_parameters={"dataframe": df}).run_results.values()
    _check_evaluated(result)

    reasons: dict[int, list[str]] = {}
    records = df.to_dict("records")
    outcomes = {r.expectation_config.id: r for r in result.results}
    for rule in rules:
        for hit in outcomes[rule.expectation.id].result.get("unexpected_index_list") or []:
            position = int(hit[_ROW])
            reasons.setdefault(position, []).append(f"{rule.name}: {rule.detail(records[position])}")

    fraction = len(reasons) / len(rows) if rows else 0.0
    return ValidationReport(
        accepted=[row for i, row in enumerate(rows) if i not in reasons],
        rejected=[(rows[i], reasons[i]) for i in sorted(reasons)],
        reject_fraction=fraction,
        batch_rejected=fraction > params.max_reject_fraction,
        results_json=json.loads(json.dumps(result.to_json_dict(), default=str)),
        docs_index=Path(docs_dir).resolve() / "index.html" if docs_dir is not None else None,
        rules=tuple(rule.name for rule in rules),
    )


def write_data_docs(results_json: dict[str, Any], docs_dir: Path) -> Path:
    """A GE Data Docs site in ``docs_dir`` for a suite result (``ValidationReport.results_json``).

    The result is put in a fresh ephemeral context's validation-results store
    and the site is built from there; returns the site's index.html.
    """
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import expectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    result = expectationSuiteValidationResultSchema.load(results_json)
    run = result.meta.get("run_id") or {}
    batch_ids = {r.expectation_config.kwargs.get("batch_id") for r in result.results}
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
        run_id=RunIdentifier(run_name=run.get("run_name"), run_time=run.get("run_time")),
        batch_identifier=batch_ids.pop() if len(batch_ids) == 1 else None,
    )
    context = _context(docs_dir)
    expectations = [r.expectation_config.to_domain_obj() for r in result.results]
    for expectation in expectations:
        expectation.id = None  # GE refuses expectations that carry another suite's id
    context.suites.add(gx.ExpectationSuite(name=result.suite_name, expectations=expectations))
    context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[DOCS_SITE_NAME])
    return Path(docs_dir).resolve() / "index.html"
