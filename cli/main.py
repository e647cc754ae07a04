"""``zhasr`` command line: each stage as a subcommand (the same function the Prefect task runs), the flows,
the registry decisions, the service and the UIs.

Every subcommand takes ``--params FILE`` and any number of ``--set KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, get_args

from mlflow_services.errors import PromotionError
from zhasr.config import ChannelMode, ConfigError, Runtime
from zhasr.context import StageContext
from zhasr.data.audio import AudioError
from zhasr.data.importers.common import FORMATS as IMPORT_FORMATS
from zhasr.data.importers.common import ImportOptions, SourceError
from zhasr.labelling.export import ExportError
from zhasr.labelling.studio import StudioError
from zhasr.model.adapters import AdapterUnavailableError, check_method_available
from zhasr.serve.keys import KeyFileError
from zhasr.transcribe.allocator import keep_freed_memory


class CommandError(Exception):
    """What the user asked for cannot be done; the message names the file, row or setting."""


STAGES = ("ingest", "validate", "train", "evaluate", "gate", "merge", "export", "register")


def _context(args: argparse.Namespace) -> StageContext:
    ctx = StageContext.load(args.params, args.set)
    if args.command in ("train", "retrain", "demo"):
        check_method_available(ctx.params.train.method)  # QLoRA on a CPU stops here, before any work
    return ctx


def _print(result: Any) -> None:
    """A command's result as JSON on stdout; a stage's report record as its ``to_dict()``."""
    data = result.to_dict() if hasattr(result, "to_dict") else result
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def cmd_stage(args: argparse.Namespace) -> Any:
    import importlib

    module = importlib.import_module(f"tasks.{args.command}")
    ctx = _context(args)
    if args.command == "train":
        return module.run(ctx, resume=args.resume)
    if args.command == "export":
        return module.run(ctx, formats=args.format or None)
    return module.run(ctx)


def cmd_synth(args: argparse.Namespace) -> Any:
    from tasks import synth

    return synth.demo_data(_context(args))


def cmd_import(args: argparse.Namespace) -> Any:
    from zhasr.data.importers import import_dataset

    ctx = _context(args)
    given = {"language": args.language, "split": args.split, "cv_split": args.cv_split, "hf_split": args.hf_split,
             "text_column": args.text_column}
    options = ImportOptions(**{key: value for key, value in given.items() if value is not None})
    try:
        result = import_dataset(args.format, Path(args.source), ctx.path("incoming"), args.batch, options)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:  # the source, the batch or a row, named
        raise CommandError(str(exc)) from exc
    return {"batch_dir": str(result.batch_dir), "rows": result.rows,
            "skipped": result.skipped, "warnings": result.warnings}


def cmd_import_model(args: argparse.Namespace) -> Any:
    from zhasr.model.loading import resolve_base_model

    ctx = _context(args)
    return str(resolve_base_model(args.source or ctx.params.model.base, ctx.path("models")))


def cmd_retrain(args: argparse.Namespace) -> Any:
    _context(args)  # fail on bad params before Prefect starts
    from flows.retrain import retrain

    return retrain(params_path=args.params, overrides=list(args.set), synthesize=args.synth,
                   only_if_new_data=not args.force)


def cmd_demo(args: argparse.Namespace) -> Any:
    args.synth = True
    # Nobody is there to answer the approval form of a demo; --set approval.timeout_s=N brings it back.
    args.set = ["approval.timeout_s=0", *args.set]
    return cmd_retrain(args)


def cmd_detector(args: argparse.Namespace) -> Any:
    from tasks import detector, prune

    ctx = _context(args)
    report = detector.run(ctx)
    name = ctx.params.detector.model_name
    if report.version:
        prune.after_registering(ctx, name)
    registered = f", registered as {name} v{report.version}" if report.version else ""
    if not report.accepted:
        print(f"zhasr detector: the new detector failed its check ({'; '.join(report.reasons)}); it is kept in "
              f"{report.rejected_dir}{registered}, and " + (f"{report.replaced} stays in use" if report.replaced else
                                                            "no detector is in place"), file=sys.stderr)
    elif report.alias:
        print(f"zhasr detector: in {report.model_dir}{registered} (challenger); `zhasr approve {report.version} "
              f"--model {name} --by NAME --note WHY` makes it the champion models:/{name}@champion names",
              file=sys.stderr)
    elif report.version:
        print(f"zhasr detector: in {report.model_dir}{registered}, unchecked (detector.check_per_kind 0): it cannot "
              "be approved", file=sys.stderr)
    return report


def cmd_promote(args: argparse.Namespace) -> Any:
    _context(args)
    from flows.promote import promote

    return promote(params_path=args.params, overrides=list(args.set))


def _registry_context(args: argparse.Namespace):
    from mlflow_services import tracking

    ctx = _context(args)
    tracking.configure(ctx)
    return args.model or ctx.params.register.model_name


def cmd_decision(args: argparse.Namespace) -> Any:
    """approve / reject / rollback: a person's decision, recorded with who and why."""
    from dataclasses import asdict

    from mlflow_services import promotion

    name = _registry_context(args)
    if args.command == "rollback":
        change = promotion.rollback(name, by=args.by, note=args.note, to=args.to)
    else:
        change = getattr(promotion, args.command)(name, args.version, by=args.by, note=args.note)
    return asdict(change)


def cmd_status(args: argparse.Namespace) -> Any:
    from rich.console import Console
    from rich.table import Table

    from mlflow_services import promotion

    state = promotion.status(_registry_context(args))
    table = Table(title=f"{state.model}: versions")
    for column in state.versions[0] if state.versions else []:
        table.add_column(column)
    for row in state.versions:
        table.add_row(*(str(v) for v in row.values()))
    changes = Table(title="alias changes (newest last)")
    columns = ("at", "action", "alias", "version", "previous", "by", "note")
    for column in columns:
        changes.add_column(column)
    for c in state.alias_changes:
        changes.add_row(*(str(getattr(c, k) or "")[:70] for k in columns))
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    console.print(table)
    console.print(changes)
    return state


def cmd_prune(args: argparse.Namespace) -> Any:
    """Registry retention: a table per model of what is kept (and why) and what is pruned, with the space freed."""
    from rich.console import Console
    from rich.table import Table

    from tasks import prune

    reports = prune.run(_context(args), [args.model] if args.model else None, dry_run=args.dry_run)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    for r in reports:
        verb = "would prune" if r.dry_run else "pruned"
        console.print(f"{r.model_name}: {verb} {len(r.pruned)} version(s), {r.freed_bytes / 1e6:.0f} MB "
                      f"(keep_newest {r.keep_newest}, keep_champions {r.keep_champions})")
        table = Table()
        for column in ("version", "kept", "why", "MB"):
            table.add_column(column)
        for v in r.versions:
            size = "" if v.kept else "?" if v.freed_bytes is None else f"{v.freed_bytes / 1e6:.0f}"
            table.add_row(v.version, "yes" if v.kept else "no", v.why, size)
        console.print(table)
    return [r.to_dict() for r in reports]


def cmd_transcribe(args: argparse.Namespace) -> Any:
    from tasks import transcribe

    ctx = _context(args)
    return transcribe.run(ctx, [Path(f) for f in args.files], model=args.model, channels=args.channels,
                          fmt=args.format, out_dir=Path(args.out) if args.out else None, runtime=args.runtime,
                          redact=args.redact, itn=args.itn, redacted_audio=args.redacted_audio)


def _kinds(value: str) -> list[str]:
    """``--redact``: "none", "all" or kinds separated by commas."""
    from zhasr.calltext.pii import parse_kinds

    try:
        return parse_kinds(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_label(args: argparse.Namespace) -> Any:
    from tasks import label

    ctx = _context(args)
    if args.action == "push":
        if not args.calls:
            raise LookupError("label push: name the calls (audio files or folders)")
        return label.push(ctx, [Path(c) for c in args.calls], model=args.model, strategy=args.strategy,
                          budget_min=args.budget_min)
    return label.pull(ctx, batch=args.batch)


def cmd_transcribe_archive(args: argparse.Namespace) -> Any:
    _context(args)
    from flows.archive import run_archive

    return run_archive(params_path=args.params, overrides=list(args.set), source=args.source, model=args.model)


def cmd_serve(args: argparse.Namespace) -> Any:
    from service.main import run

    args.set = [*args.set, *(f"serve.{key}={value}" for key in ("host", "port")
                             if (value := getattr(args, key)) is not None)]
    run(_context(args))


def cmd_serve_keys(args: argparse.Namespace) -> Any:
    from zhasr.serve.keys import KeyStore
    from zhasr.transcribe.hotwords import parse_hotwords

    ctx = _context(args)
    store = KeyStore(ctx.root / ctx.params.serve.keys_file)
    if args.action == "add":
        try:
            hotwords = parse_hotwords(args.hotwords or "")
        except ValueError as exc:
            raise CommandError(f"--hotwords: {exc}") from exc
        key = store.add(args.name, hotwords)
        print(f"new key for {args.name} (shown once, store it now):", file=sys.stderr)
        return key + "\n"
    if args.action == "revoke":
        record = store.revoke(args.name)
        return {"name": record.name, "revoked": record.revoked}
    return [{"name": r.name, "created": r.created, "revoked": r.revoked, "sha256": r.sha256[:12], "hotwords": r.hotwords}
            for r in store.records()]


def cmd_serve_purge(args: argparse.Namespace) -> Any:
    import time

    from zhasr.serve.jobs import JobStore

    ctx = _context(args)
    days = ctx.params.serve.retain_days if args.days is None else args.days
    if days <= 0:
        raise LookupError("serve-purge: serve.retain_days is 0 (keep every job); name --days to purge")
    store = JobStore(ctx.root / ctx.params.serve.jobs_dir)
    try:
        return {"purged": store.purge(time.time() - days * 86400), "older_than_days": days}
    finally:
        store.close()


def cmd_schedule(args: argparse.Namespace) -> Any:
    ctx = _context(args)
    from flows.schedule import serve_schedule

    params_path = Path(args.params).resolve() if args.params else None
    print(f"serving deployment retrain/{ctx.params.schedule.deployment}: cron {ctx.params.schedule.cron!r} "
          f"({ctx.params.schedule.timezone}); Ctrl-C stops it", flush=True)
    if ctx.params.archive.source:
        print(f"serving deployment transcribe-archive/{ctx.params.schedule.deployment}: cron "
              f"{ctx.params.archive.cron!r}, calls from {ctx.params.archive.source}", flush=True)
    if ctx.params.label.calls_dir:
        print(f"serving deployment label-push/{ctx.params.schedule.deployment}: cron {ctx.params.label.push_cron!r}, "
              f"calls from {ctx.params.label.calls_dir}", flush=True)
    if ctx.params.detector.cron:
        print(f"serving deployment detector/{ctx.params.schedule.deployment}: cron {ctx.params.detector.cron!r}, "
              f"a build on each new base of {ctx.params.detector.model_name}", flush=True)
    serve_schedule(ctx.params, params_path, list(args.set))


def cmd_ui(args: argparse.Namespace) -> Any:
    ctx = _context(args)
    from zhasr.project import mlflow_artifact_uri

    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(args.port),
               "--backend-store-uri", os.environ["MLFLOW_TRACKING_URI"],
               "--default-artifact-root", mlflow_artifact_uri(ctx.root), "--workers", "1"]
    print(f"MLflow UI on http://127.0.0.1:{args.port}", flush=True)
    # MLflow takes this process's place: a SIGTERM to its pid (kill, a service manager) stops its web server
    # too, where a child would have been orphaned with the server still listening
    os.execve(sys.executable, command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", help="params file (default: params.yaml at the project root)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param, e.g. --set train.learning_rate=1e-4 (repeatable)")
    parser = argparse.ArgumentParser(prog="zhasr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Callable[[argparse.Namespace], Any]] = {}

    def add(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        handlers[name] = handler
        return sub.add_parser(name, parents=[common], help=help)

    add("synth", cmd_synth, "write the demo batches under paths.incoming: synthetic call-center speech, "
                            "and the regression set when present")
    p = add("import", cmd_import, "turn a dataset into a batch under paths.incoming")
    p.add_argument("format", choices=sorted(IMPORT_FORMATS), help="source layout")
    p.add_argument("source", help="manifest file (jsonl/json/csv) or dataset folder")
    p.add_argument("--batch", required=True, help="name of the new batch folder")
    p.add_argument("--language",
                   help=f"Whisper language code for rows whose source gives none (default {ImportOptions.language})")
    p.add_argument("--split", help='stamp every row, e.g. "regression" for an evaluation-only set')
    p.add_argument("--cv-split", help=f"commonvoice: which <split>.tsv (default {ImportOptions.cv_split})")
    p.add_argument("--hf-split", help="hf-disk: which split of a DatasetDict (default all)")
    p.add_argument("--text-column", help="label column when it is not the default")
    add("import-model", cmd_import_model, "import the base model into a local Hugging Face folder").add_argument(
        "source", nargs="?", help="packaged:whisper-base, tiny-random, a CTranslate2 or HF folder, or a hub id")
    stage_help = {
        "ingest": "decode incoming batches to 16 kHz mono and normalize labels",
        "validate": "run the Great Expectations suite; quarantine failing rows",
        "train": "train a LoRA/DoRA/QLoRA adapter on the train split (torchrun / accelerate launch for DDP)",
        "evaluate": "decode the test split and the regression set with candidate and champion; CER",
        "gate": "apply the promotion rules of params.gate to the evaluation",
        "merge": "fold the adapter into the base weights; check its outputs against base + adapter",
        "export": "write the merged model for whisper.cpp, faster-whisper and GPTQ, run and score each export",
        "register": "register the merged model with its model card; alias challenger if it passed the gate",
    }
    for stage in STAGES:
        p = add(stage, cmd_stage, stage_help[stage])
        if stage == "train":
            p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
        if stage == "export":
            from zhasr.export.formats import EXPORT_FORMATS

            p.add_argument("--format", action="append", choices=EXPORT_FORMATS,
                           help="a format to export (repeatable; default: export.formats in params)")
    p = add("retrain", cmd_retrain, "run the retraining flow (Prefect); nothing is trained when no new validated "
                                    "batch arrived since the newest registered version, unless --force")
    p.add_argument("--synth", action="store_true", help="first write the synthetic batch if it is missing")
    p.add_argument("--force", action="store_true", help="train on an unchanged dataset (after a change of settings)")
    add("demo", cmd_demo, "synthesize the demo batch and run the retraining flow (again: only with new data, or "
                          "--force)").add_argument("--force", action="store_true", help="train on an unchanged dataset")
    add("detector", cmd_detector, "train the number detector transcribe.detector names; it replaces the last one "
                                  "only if it passes its check (detector: settings; 11-30 min on 2 CPU cores)")
    add("promote", cmd_promote, "gate, register and wait for approval on the evaluation in reports/")
    registered_model = dict(help="the registered model (default: register.model_name; detector.model_name for the "
                                 "number detector)")
    for command, help in (("approve", "make a challenger the champion"), ("reject", "turn a challenger down")):
        p = add(command, cmd_decision, help)
        p.add_argument("version", help="model version number")
        p.add_argument("--model", **registered_model)
        p.add_argument("--by", required=True, help="who decides (recorded)")
        p.add_argument("--note", required=True, help="why (recorded)")
    p = add("rollback", cmd_decision, "give the champion alias back to the previous champion")
    p.add_argument("--model", **registered_model)
    p.add_argument("--to", help="a former champion's version (default: the one before the current)")
    p.add_argument("--by", required=True, help="who decides (recorded)")
    p.add_argument("--note", required=True, help="why (recorded)")
    add("status", cmd_status, "versions, aliases, gate and export verdicts and the alias history").add_argument(
        "--model", **registered_model)
    p = add("prune", cmd_prune, "delete the weights, exports and registry entries of old versions that hold no alias "
                                "(register.keep_newest, register.keep_champions); their runs stay")
    p.add_argument("--model", help="one registered model (default: register.model_name and detector.model_name)")
    p.add_argument("--dry-run", action="store_true", help="show what would be pruned; change nothing")
    p = add("transcribe", cmd_transcribe, "transcribe audio files (whole calls, any format) with a registered "
                                          "version or a model folder")
    p.add_argument("files", nargs="+", help="audio files")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a folder (default: the champion)")
    p.add_argument("--channels", choices=get_args(ChannelMode), help="default: transcribe.channels")
    p.add_argument("--runtime", choices=get_args(Runtime), help="default: transcribe.runtime")
    from zhasr.transcribe.writers import FORMATS

    p.add_argument("--format", choices=FORMATS, default="json")
    p.add_argument("--out", help="write <out>/<file stem>.<ext> per file and print a summary")
    p.add_argument("--redact", type=_kinds, help="personal data to replace: all, none or some of phone,id_card,"
                                                 "bank_card,code,email,number (default: transcribe.redact)")
    p.add_argument("--itn", action=argparse.BooleanOptionalAction, default=None,
                   help="numbers written as digits (default: transcribe.itn)")
    p.add_argument("--redacted-audio", action="store_true",
                   help="also write <out>/<file stem>.redacted.wav with the redacted stretches muted")
    p = add("transcribe-archive", cmd_transcribe_archive,
            "transcribe a night's calls in shards on a Dask (or Ray) cluster into archive.out: a transcript per "
            "call and one index (Parquet, JSONL); a rerun skips what is done")
    p.add_argument("source", nargs="?", help="a folder, glob pattern or manifest of calls (default archive.source)")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a folder (default: the champion)")
    p = add("label", cmd_label, "Label Studio: push calls with the champion's segments as predictions (most "
                                "uncertain first); pull people's corrections into a new batch")
    p.add_argument("action", choices=("push", "pull"))
    p.add_argument("calls", nargs="*", help="push: audio files or folders of calls")
    p.add_argument("--model", help="push: models:/NAME@ALIAS, models:/NAME/VERSION or a folder (default: the champion)")
    from zhasr.labelling.selection import STRATEGIES

    p.add_argument("--strategy", choices=STRATEGIES, help="push: default label.strategy")
    p.add_argument("--budget-min", type=float,
                   help="push: minutes of audio to send (default label.budget_min; 0 = all)")
    p.add_argument("--batch", help="pull: the new batch's name (default labelstudio-p<project>-<UTC time>)")
    p = add("serve", cmd_serve, "serve the champion behind an OpenAI-compatible API (settings: params serve)")
    p.add_argument("--host", help="address to listen on (default serve.host, 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="default serve.port (8000)")
    p = add("serve-keys", cmd_serve_keys, "API keys of the service: add NAME (prints the key once), list, revoke NAME")
    p.add_argument("action", choices=("add", "list", "revoke"))
    p.add_argument("name", nargs="?", help="who the key is for (add, revoke)")
    p.add_argument("--hotwords", help="add: this key's decoder prompt terms, comma-separated (a request's own "
                                      "hotwords replace them)")
    p = add("serve-purge", cmd_serve_purge, "delete the service's finished jobs (results, kept audio) older than "
                                             "serve.retain_days; the running service does this hourly")
    p.add_argument("--days", type=float, help="default: serve.retain_days")
    add("schedule", cmd_schedule, "serve the scheduled deployments: retraining (params.schedule), and bulk "
                                  "transcription, the label push and the number detector where set")
    add("ui", cmd_ui, "start the MLflow UI on 127.0.0.1").add_argument("--port", type=int, default=5000)
    parser.set_defaults(handlers=handlers)
    return parser


def _show_stage_figures() -> None:
    """The stages' own figures (decode-cache hits, windows read: INFO of the ``tasks`` loggers) on stderr;
    the root logger is left to what runs (the service configures its own)."""
    stages = logging.getLogger("tasks")
    if not stages.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        stages.addHandler(handler)
        stages.setLevel(logging.INFO)
        stages.propagate = False


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # first, before a thread takes a malloc arena of its own (zhasr.transcribe.allocator)
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_stage_figures()
    try:
        # Libraries print progress and Trainer logs to stdout; stdout is kept for the JSON result.
        with contextlib.redirect_stdout(sys.stderr):
            result = args.handlers[args.command](args)
    except ConfigError as exc:
        print(f"zhasr: params error: {exc}", file=sys.stderr)
        return 2
    except (AdapterUnavailableError, PromotionError, AudioError, LookupError, KeyFileError, StudioError,
            ExportError, SourceError, CommandError) as exc:
        print(f"zhasr: {exc}", file=sys.stderr)
        return 2
    # Under torchrun every process runs the command; the result is printed once.
    if isinstance(result, str):  # a transcript in the format asked for, as it is
        sys.stdout.write(result)
    elif result is not None and args.command != "ui" and os.environ.get("RANK", "0") == "0":
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
