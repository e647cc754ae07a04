"""Gate, registry and approval under the Prefect harness.

Each test registers real model versions (the tiny Whisper) in the project's own
MLflow store. The evaluation they are judged on is scored by the real scoring
code from transcripts written for the test: a candidate that gets 10% of the
characters wrong against a champion at 40%, or the other way round.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest
from conftest import manifest_row, write_tone
from mlflow.tracking import MlflowClient
from test_ingest import write_batch

from cli.main import main
from flows.approval import Approval, Promotion
from mlflow_services import promotion, registry
from tasks.decoding import ensure_champion, whole_clip_decoding
from zhasr.config import load_params
from zhasr.context import StageContext
from zhasr.data.manifest import ManifestRow, atomic_write_json, atomic_write_jsonl
from zhasr.data.validate import ValidatedDataset
from zhasr.evaluation.clips import read_clip_scores, write_clip_scores
from zhasr.evaluation.export_verdict import FIT, ExportReport, ExportResult, Rise, SetResult
from zhasr.evaluation.gate import RuleOutcome, decide
from zhasr.evaluation.scoring import SystemOutput, score_set
from zhasr.evaluation.slices import slice_labels
from zhasr.evaluation.summary import BaseFigures, EvaluationSummary
from zhasr.model.decode import Transcript
from zhasr.model.merge import MergeReport
from zhasr.model.train import TrainReport

NAME = "zhasr-test"
SENTENCES = ["您好请问有什么可以帮您", "我想查一下订单的物流信息", "退款金额三到五个工作日原路退回",
             "请问您的收货地址是杭州西湖区吗", "快递员没打电话就把包裹放在门口了", "验证码请在五分钟内输入"]


def corrupt(text: str, every: int | None) -> str:
    """Every ``every``-th character replaced; None leaves the text as it is."""
    return text if every is None else "".join("错" if i % every == 0 else c for i, c in enumerate(text))


def rows(set_name: str, n: int) -> list[ManifestRow]:
    return [manifest_row(id=f"{set_name}-{i}", text=SENTENCES[i % len(SENTENCES)], duration_s=3.0, batch=set_name,
                         split=set_name, speaker=f"spk{i % 4}", band="telephone" if i % 2 else "wideband")
            for i in range(n)]


def outputs(set_rows: list[ManifestRow], every: int | None) -> SystemOutput:
    transcripts = [Transcript(corrupt(r.text_norm, every), [], False, False) for r in set_rows]
    return SystemOutput(transcripts, decode_seconds=1.0)


def write_evaluation(ctx: StageContext, model_dir, *, candidate_every, champion_every, regression_every=None) -> None:
    """The reports the gate and register stages read: an evaluation against the current champion."""
    with registry_run(ctx):
        champion = ensure_champion(ctx, model_dir)
    sets = {}
    for set_name, n, cand in (("test", 24, candidate_every), ("regression", 6, regression_every or candidate_every)):
        set_rows = rows(set_name, n)
        slices = [slice_labels(r, 30.0) for r in set_rows]
        systems = {"candidate": outputs(set_rows, cand), "champion": outputs(set_rows, champion_every)}
        sets[set_name], clips = score_set(set_rows, slices, systems, ["订单"])
        write_clip_scores(ctx.utterances(set_name), clips)
    summary = EvaluationSummary(str(champion.version), {}, "the service's own", sets)
    atomic_write_json(ctx.report("evaluate"), summary.to_dict())
    atomic_write_json(ctx.report("merge"), MergeReport(str(model_dir), 1.0, "float32", 1.0, [], 0.0, 1e-3).to_dict())
    if not ctx.report("validate").exists():
        atomic_write_json(ctx.report("validate"), ValidatedDataset("0" * 32, 30, 30, 0, [], {"test": 24, "regression": 6},
                                                                   {}).to_dict())
    atomic_write_json(ctx.report("train"), TrainReport(
        adapter_dir="runs/train/adapter", base_model_dir=str(model_dir), start="tiny-random", steps=4, planned_steps=4,
        limited_by="epochs", step_seconds_measured=None, train_clips=8, new_clips=8, replayed_clips=0,
        learned_batches=[], dev_clips=2, final_loss=1.0, seconds=1.0, cache_seconds=0.0, cached_encoder_layers=0,
        precision="fp32", windows=8, samples_per_second=8.0, clips_per_second=8.0, best_step=4, best_dev_cer=0.5,
        world_size=1, trainable_params=1, total_params=2, loss_history=[(4, 1.0)], dev_cer_history=[(4, 0.5)],
    ).to_dict())


def scored_sets(*cases: tuple[str, int | None, int | None]) -> tuple[dict, dict]:
    """(evaluation, scored clips) of 24-clip sets, each case (set, candidate's and champion's ``every``)."""
    evaluation, records = {}, {}
    for set_name, cand, champ in cases:
        set_rows = rows(set_name, 24)
        evaluation[set_name], records[set_name] = score_set(
            set_rows, [slice_labels(r, 30.0) for r in set_rows],
            {"candidate": outputs(set_rows, cand), "champion": outputs(set_rows, champ)}, [])
    return evaluation, records


def registry_run(ctx: StageContext):
    from mlflow_services import tracking

    return tracking.stage_run(ctx, "test-setup")


@pytest.fixture()
def ctx(project):
    from zhasr.project import apply_default_env

    params = load_params(project / "params.yaml", ["approval.timeout_s=0"])
    apply_default_env(project, params.model.base)
    return StageContext(project, params)


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def promote(overrides: list[str] | None = None) -> Promotion:
    from flows.promote import promote as promote_flow

    state = promote_flow(overrides=overrides or [], return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def test_gate_rules_on_a_clear_gain_and_on_a_regression(ctx, tiny_model_dir):
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3, regression_every=2)
    evaluation = ctx.read_report("evaluate", EvaluationSummary)  # as the gate reads it: back from JSON
    verdict = decide(evaluation.sets, read_clip_scores(ctx.utterances("test")), ctx.params.gate)
    outcome = {r.rule: r.passed for r in verdict.rules}
    assert verdict.gain.gain > 0 and verdict.gain.low > 0
    assert outcome == {"cer_gain": True, "relative_gain": True, "significant": True, "slices": True,
                       "regression_set": False, "telephone_set": True, "loop_rate": True}
    assert not verdict.passed and verdict.reason.startswith("regression_set: CER")


def test_a_model_folder_linked_from_elsewhere_registers(ctx, project, tiny_model_dir):
    """A base model folder that is a link to a shared copy (the way a team keeps one base model for many
    checkouts): the champion registers from it, its weights in the version's artifacts."""
    linked = project / "shared-link" / "whisper-base"
    linked.parent.mkdir()
    linked.symlink_to(tiny_model_dir, target_is_directory=True)
    with registry_run(ctx):
        champion = ensure_champion(ctx, linked)
    assert champion.version == 1
    assert (registry.whisper_dir(champion) / "model.safetensors").is_file()


def test_zhasr_gate_prints_the_verdict_as_the_report_holds_it(ctx, tiny_model_dir, capsys):
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3, regression_every=2)
    assert main(["gate"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(ctx.report("gate").read_text()) and printed["rules"][0]["rule"] == "cer_gain"


def test_the_evaluation_report_reads_back_as_written_and_an_unreadable_one_is_named(ctx):
    sets, _ = scored_sets(("test", 10, 3), ("telephone", 2, 3))
    sets["telephone"] = replace(sets["telephone"], base=BaseFigures(0.3, 0.31, -0.01, -0.02, 0.0))
    summary = EvaluationSummary("3", {"champion": {"hits": 24, "misses": 0}}, "the service's own", sets)
    atomic_write_json(ctx.report("evaluate"), summary.to_dict())
    assert ctx.read_report("evaluate", EvaluationSummary) == summary
    assert json.loads(ctx.report("evaluate").read_text())["test"]["candidate"]["cer"] == sets["test"].candidate.cer
    atomic_write_json(ctx.report("evaluate"), {"test": summary.to_dict()["test"]})  # no report fields
    with pytest.raises(LookupError, match=r"evaluate\.json: not what this zhasr's evaluate stage writes .*KeyError.*"
                                          r"run `zhasr evaluate`"):
        ctx.read_report("evaluate", EvaluationSummary)


def test_a_clip_record_without_a_key_the_gate_reads_is_named_with_its_line(tmp_path):
    _, records = scored_sets(("test", 10, 3))
    path = tmp_path / "evaluate_test_utterances.jsonl"
    write_clip_scores(path, records["test"])
    assert read_clip_scores(path) == records["test"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    atomic_write_jsonl(path, [lines[0], {k: v for k, v in lines[1].items() if k != "speaker"}])
    with pytest.raises(LookupError, match=r"evaluate_test_utterances\.jsonl line 2: no 'speaker'.*zhasr evaluate"):
        read_clip_scores(path)


def test_the_loop_rule_reads_a_rise_beyond_its_noise(ctx):
    evaluation, records = scored_sets(("test", 10, 3), ("regression", 10, 3))
    clips = records["test"]  # 24 clips, 4 speakers of 6 clips (speaker i % 4)

    def loop_rule(looping: set[int], beyond_noise: bool = True) -> RuleOutcome:
        looped = [replace(c, candidate_looped=i in looping, champion_looped=False) for i, c in enumerate(clips)]
        rules = replace(ctx.params.gate, loops_beyond_noise=beyond_noise)
        return {r.rule: r for r in decide(evaluation, looped, rules).rules}["loop_rate"]

    one = loop_rule({0})  # one clip of 24 loops on the first decoding: +4.2 points, on one speaker
    assert one.passed and "rise +4.17 pts [+0.00 pts" in one.detail and "interval lies above 0" in one.detail
    assert not loop_rule({0}, beyond_noise=False).passed  # the point estimate alone: any rise fails
    assert not loop_rule(set(range(8))).passed  # two clips of every speaker: beyond noise


def test_gate_fails_a_candidate_that_holds_on_wideband_speech_but_loses_on_the_telephone_twin(ctx):
    evaluation, records = scored_sets(("test", 10, 3), ("regression", 10, 3), ("telephone", 2, 3))
    outcome = {r.rule: r for r in decide(evaluation, records["test"], ctx.params.gate).rules}
    assert outcome["regression_set"].passed and not outcome["telephone_set"].passed
    assert "on 24 clips" in outcome["telephone_set"].detail and "limit +2.00 pts" in outcome["telephone_set"].detail


def test_general_speech_fails_on_either_decoding(ctx):
    """With a prompt set, real speech is judged as the service decodes it and as whole clips without one:
    a candidate the prompt flatters fails on the second."""
    prompted = replace(ctx.params.transcribe, hotwords=["订单", "退款"], whole_clip_s=0.0)
    assert whole_clip_decoding(ctx.params.transcribe) == ctx.params.transcribe  # the defaults: one decoding
    assert whole_clip_decoding(prompted) == replace(ctx.params.transcribe, hotwords=[], whole_clip_s=30.0)
    evaluation, records = scored_sets(("test", 10, 3), ("regression", 10, 3), ("regression-whole-clip", 2, 3))
    verdict = decide(evaluation, records["test"], ctx.params.gate)
    outcome = {r.rule: r.passed for r in verdict.rules}
    assert outcome["regression_set"] and not outcome["regression_whole_clip_set"] and not verdict.passed


def test_general_speech_is_judged_against_the_better_of_base_and_champion(ctx):
    """A champion that already lost ground on real speech leaves the next round only the rest of the limit."""
    evaluation, records = scored_sets(("test", 10, 3), ("regression", 8, 9))
    regression = evaluation["regression"]
    assert regression.candidate.cer - regression.champion.cer < 0.02  # within the limit of the champion

    def with_base(cer: float) -> None:
        evaluation["regression"] = replace(regression, base=BaseFigures(cer, 0.0, 0.0, 0.0, 0.0))

    with_base(regression.candidate.cer - 0.03)  # the base was 3 points better
    outcome = {r.rule: r for r in decide(evaluation, records["test"], ctx.params.gate).rules}
    assert not outcome["regression_set"].passed and "(base model; champion" in outcome["regression_set"].detail
    with_base(regression.champion.cer + 0.01)  # the champion is the better one
    outcome = {r.rule: r for r in decide(evaluation, records["test"], ctx.params.gate).rules}
    assert outcome["regression_set"].passed and "(champion; champion" in outcome["regression_set"].detail


def test_gate_fails_a_candidate_that_is_better_overall_but_worse_on_telephone_calls(ctx):
    set_rows = rows("test", 24)
    slices = [slice_labels(r, 30.0) for r in set_rows]
    candidate = SystemOutput([Transcript(corrupt(r.text_norm, 2 if r.band == "telephone" else None), [], False,
                                         False) for r in set_rows], 1.0)
    summary, records = score_set(set_rows, slices, {"candidate": candidate, "champion": outputs(set_rows, 3)}, [])
    verdict = decide({"test": summary}, records, ctx.params.gate)
    outcome = {r.rule: r for r in verdict.rules}
    assert outcome["cer_gain"].passed and outcome["regression_set"].passed  # no regression set: not judged
    assert not outcome["slices"].passed and "band=telephone (12 clips)" in outcome["slices"].detail
    assert not verdict.passed


def test_worse_candidate_is_not_promoted_and_champion_untouched(prefect_server, ctx, tiny_model_dir, capsys):
    write_evaluation(ctx, tiny_model_dir, candidate_every=3, champion_every=10)
    result = promote()
    assert result.registration.version == "2" and not result.registration.passed and result.approval is None
    assert aliases() == {"champion": "1"}
    version = MlflowClient().get_model_version(NAME, "2")
    registered_by = MlflowClient().get_run(version.run_id).data.tags  # the rules and the reason are on the run
    assert version.tags["zhasr.gate"] == "fail" and registered_by["zhasr.gate.cer_gain"] == "fail"
    assert "cer_gain" in registered_by["zhasr.gate_reason"]
    assert main(["approve", "2", "--by", "alice", "--note", "looks fine"]) == 2
    assert "did not pass the gate" in capsys.readouterr().err
    assert aliases() == {"champion": "1"}


def _answer_when_paused(answer: dict, meanwhile=lambda: None) -> threading.Thread:
    """Resume the first paused flow run with ``answer`` as its form input (as a reviewer in the UI would), after
    ``meanwhile()`` (what someone else did while the form waited)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateName
    from prefect.flow_runs import resume_flow_run

    def reviewer():
        deadline = time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))))
                if paused:
                    meanwhile()
                    resume_flow_run(paused[0].id, run_input=answer)
                    return
                time.sleep(0.5)

    thread = threading.Thread(target=reviewer)
    thread.start()
    return thread


def test_better_candidate_is_challenger_then_champion_after_approval_in_the_form(prefect_server, ctx, tiny_model_dir):
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    reviewer = _answer_when_paused({"approve": True, "reviewer": "alice", "comment": "4x fewer errors"})
    result = promote(["approval.timeout_s=60", "approval.poll_s=1"])
    reviewer.join()
    assert result.registration.passed and result.registration.version == "2"
    assert result.approval == Approval("approved", "2", "alice", "4x fewer errors")
    assert aliases() == {"champion": "2"}
    version = MlflowClient().get_model_version(NAME, "2")
    assert version.tags["zhasr.review"] == "approved" and len(version.tags) <= 8  # the registry page stays readable
    assert registry.alias_history(NAME)[-2].note == "4x fewer errors"
    history = [(c.action, c.alias, c.version, c.by) for c in registry.alias_history(NAME)]
    assert history == [("register", "champion", "1", "zhasr"), ("gate", "challenger", "2", "zhasr gate"),
                       ("approve", "champion", "2", "alice"), ("approve", "challenger", "2", "alice")]


def test_an_answer_that_no_longer_applies_is_refused_and_the_flow_still_finishes(prefect_server, ctx,
                                                                                  tiny_model_dir):
    """The form on v2 answered "reject" after someone approved v2 on the command line: nothing changes."""
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    reviewer = _answer_when_paused({"approve": False, "reviewer": "bob", "comment": "wrong batch"},
                                   meanwhile=lambda: promotion.approve(NAME, "2", by="carol", note="looked at it first"))
    result = promote(["approval.timeout_s=60", "approval.poll_s=1"])
    reviewer.join()
    assert (result.approval.decision, result.approval.champion) == ("refused", "2")
    assert "v2 is the champion; use rollback to replace it" in result.approval.note and aliases() == {"champion": "2"}


def test_rejection_in_the_form_keeps_the_champion(prefect_server, ctx, tiny_model_dir):
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    reviewer = _answer_when_paused({"approve": False, "reviewer": "bob", "comment": "wrong batch"})
    result = promote(["approval.timeout_s=60", "approval.poll_s=1"])
    reviewer.join()
    assert result.approval.decision == "rejected"
    assert aliases() == {"champion": "1"}
    assert MlflowClient().get_model_version(NAME, "2").tags["zhasr.review"] == "rejected"


def test_no_answer_before_the_timeout_leaves_a_challenger(prefect_server, ctx, tiny_model_dir):
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    result = promote(["approval.timeout_s=2", "approval.poll_s=1"])
    assert result.approval == Approval("timeout", "1")
    assert aliases() == {"champion": "1", "challenger": "2"}


def test_cli_approve_reject_rollback_and_status(prefect_server, ctx, tiny_model_dir, capsys):
    for _ in range(2):  # v2 and v3, each better than the champion of its time
        write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
        promote()
    assert aliases() == {"champion": "1", "challenger": "3"}
    assert main(["approve", "2", "--by", "carol", "--note", "first adapter"]) == 0
    assert main(["approve", "3", "--by", "carol", "--note", "more data"]) == 0
    assert aliases() == {"champion": "3"}
    assert main(["approve", "3", "--by", "carol", "--note", "again"]) == 2
    assert main(["reject", "3", "--by", "dan", "--note", "x"]) == 2  # the champion is replaced by rollback
    capsys.readouterr()

    assert main(["rollback", "--by", "dan", "--note", "complaints about v3"]) == 0
    change = json.loads(capsys.readouterr().out)
    assert (change["version"], change["previous"], change["by"]) == ("2", "3", "dan")
    assert aliases() == {"champion": "2"}
    assert main(["rollback", "--by", "dan", "--note", "back to base"]) == 0
    assert aliases() == {"champion": "1"}
    assert main(["rollback", "--by", "dan", "--note", "nothing left"]) == 2
    assert "no previous champion" in capsys.readouterr().err
    assert main(["rollback", "--to", "3", "--by", "dan", "--note", "forward again"]) == 2
    assert "v3: was champion until a rollback past it; approve it again" in capsys.readouterr().err

    assert main(["status"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in state["versions"]] == ["3", "2", "1"]
    assert state["versions"][2]["aliases"] == "champion"
    assert state["versions"][0]["review"] == "rolled back to v2"
    assert [c["action"] for c in state["alias_changes"]][-2:] == ["rollback", "rollback"]
    # approving the challenger moved two aliases in one decision: one row
    assert [(c["version"], c["alias"]) for c in state["alias_changes"] if c["action"] == "approve"] == [
        ("2", "champion"), ("3", "challenger, champion")]


def _logged_export(ctx: StageContext, tmp_path, name: str) -> ExportResult:
    """A fit export kept with a run of its own, as the export stage keeps one; the next register names it."""
    from mlflow_services.tracking import log_export

    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 200_000)
    with registry_run(ctx) as run:
        uri = log_export(folder, "ct2-int8", run.info.run_id)
    result = ExportResult("ct2-int8", str(folder), 0.2, 1.0, {"test": SetResult(0.1, Rise(0.0, -0.01, 0.01), 0.1)},
                          0.02, FIT, uri)
    atomic_write_json(ctx.report("export"), ExportReport({}, [result]).to_dict())
    return result


def _artifact_dir(uri: str):
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    from mlflow_services.tracking import local_path

    run_id, path = RunsArtifactRepository.parse_runs_uri(uri)
    return local_path(MlflowClient().get_run(run_id).info.artifact_uri) / path


def test_prune_deletes_old_versions_files_and_keeps_aliases_former_champions_and_shared_exports(
        prefect_server, ctx, tiny_model_dir, tmp_path, capsys):
    shared = None
    for k, (candidate, champion) in enumerate(((10, 3), (10, 3), (3, 10), (10, 3))):  # v2 .. v5
        write_evaluation(ctx, tiny_model_dir, candidate_every=candidate, champion_every=champion)
        if k == 1:
            shared = _logged_export(ctx, tmp_path, "shared")  # v3 names it, and v5 (zhasr promote again) too
        elif k == 2:
            own = _logged_export(ctx, tmp_path, "own")  # only v4 names it
        elif k == 3:
            atomic_write_json(ctx.report("export"), ExportReport({}, [shared]).to_dict())
        promote()
        if k == 0:
            assert main(["approve", "2", "--by", "carol", "--note", "first adapter"]) == 0
        if k == 1:
            assert main(["reject", "3", "--by", "carol", "--note", "wrong batch"]) == 0
    assert aliases() == {"champion": "2", "challenger": "5"}
    capsys.readouterr()
    assert main(["status"]) == 0  # what bulk transcription may run in int8 before a night's run
    assert [v["exports"] for v in json.loads(capsys.readouterr().out)["versions"]] == [
        "ct2-int8 fit", "ct2-int8 fit", "ct2-int8 fit", "", ""]
    client = MlflowClient()
    doomed = {n: client.get_model_version(NAME, n) for n in ("3", "4")}
    weights = {n: registry.whisper_dir(v) for n, v in doomed.items()}
    capsys.readouterr()

    keep = ["--set", "register.keep_newest=1", "--set", "register.keep_champions=1"]
    assert main(["prune", "--dry-run", *keep, "--set", f"serve.model=models:/{NAME}/3"]) == 0
    planned = json.loads(capsys.readouterr().out)[0]
    assert planned["pruned"] == ["4"] and planned["versions"][2]["why"] == "named by serve.model"
    assert main(["prune", "--dry-run", *keep]) == 0
    planned = json.loads(capsys.readouterr().out)[0]
    assert planned["pruned"] == ["4", "3"] and planned["freed_bytes"] > 2 * 200_000
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == {"1", "2", "3", "4", "5"}

    client.delete_run(doomed["3"].run_id)  # a person deleted its run in the UI: the prune still goes through
    assert main(["prune", *keep]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert [(v["version"], v["why"]) for v in report["versions"]] == [
        ("5", "alias challenger; newest 1"), ("4", "pruned"), ("3", "pruned"), ("2", "alias champion"), ("1", "former champion")]
    assert report["freed_bytes"] == planned["freed_bytes"]
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == {"1", "2", "5"}
    assert not any(p.exists() and any(p.iterdir()) for p in weights.values())
    for kept in ("1", "2", "5"):
        assert (registry.whisper_dir(client.get_model_version(NAME, kept)) / "config.json").is_file()
    assert not _artifact_dir(own.uri).exists()
    assert (_artifact_dir(shared.uri) / "model.bin").is_file()  # v5 names it still
    pruned_run = client.get_run(doomed["4"].run_id).data
    assert "zhasr-test v4: weights and exports deleted" in pruned_run.tags["zhasr.pruned"]
    assert pruned_run.metrics and pruned_run.tags["mlflow.note.content"].startswith("> **Pruned.** zhasr-test v4")
    assert main(["approve", "3", "--by", "carol", "--note", "after all"]) == 2
    assert "zhasr-test v3: no such model version (pruned ones are gone)" in capsys.readouterr().err
    assert main(["prune", "--model", "zhasr-typo"]) == 2
    assert "zhasr-typo: no registered model of that name" in capsys.readouterr().err

    assert main(["rollback", "--by", "dan", "--note", "back to base"]) == 0  # to the former champion, kept whole
    assert aliases() == {"champion": "1", "challenger": "5"}
    # the promote flow prunes after registering: v2 (rolled back from: no rollback returns to it) and v5 (no longer
    # challenger once v6 is) go
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    promote(["register.keep_newest=1", "register.keep_champions=1"])
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == {"1", "6"}
    assert main(["prune", "--set", "register.keep_champions=0"]) == 2
    assert "register.keep_champions" in capsys.readouterr().err

    # a former champion gone from the registry is not offered back
    assert main(["approve", "6", "--by", "carol", "--note", "second adapter"]) == 0
    client.delete_model_version(NAME, "1")
    assert main(["rollback", "--to", "1", "--by", "dan", "--note", "x"]) == 2
    assert "v1: was champion, but it is pruned (champions so far, with their files: 6)" in capsys.readouterr().err
    assert main(["rollback", "--by", "dan", "--note", "x"]) == 2
    assert "no previous champion to roll back to (champions so far, with their files: 6)" in capsys.readouterr().err


def test_the_detector_flow_builds_on_each_new_champion_and_waits_for_a_person(prefect_server, ctx, tiny_model_dir):
    """The scheduled detector flow (``skip_if_built``): a build on the transcriber's champion, approved in the
    flow's form; nothing while that champion and the build's settings stay; a new build when the settings change
    and once a person approves another champion."""
    from flows.detector import DetectorOutcome, build_detector
    from flows.schedule import detector_deployment

    assert detector_deployment(ctx.params) is None  # detector.cron "": not served
    scheduled = detector_deployment(load_params(ctx.root / "params.yaml", ["detector.cron=0 4 * * *"]))
    assert scheduled.parameters == {"params_path": None, "overrides": [], "skip_if_built": True}
    assert scheduled.schedules[0].schedule.cron == "0 4 * * *" and scheduled.concurrency_limit == 1

    def detector_flow(*overrides: str) -> DetectorOutcome:
        state = build_detector(overrides=["detector.clips=7", "detector.check_per_kind=1", "detector.check_others=1",
                                          "detector.min_mean_recall=0", "detector.min_recall=0",
                                          "detector.min_precision=0", *overrides],
                               skip_if_built=True, return_state=True)
        assert state.is_completed(), state.message
        return state.result()

    assert detector_flow() == DetectorOutcome("detector.base models:/zhasr-test@champion: no version of "
                                              "zhasr-test holds the alias 'champion'")
    with registry_run(ctx):
        ensure_champion(ctx, tiny_model_dir)  # zhasr-test v1
    reviewer = _answer_when_paused({"approve": True, "reviewer": "ana", "comment": "heard every kind"})
    first = detector_flow("approval.timeout_s=60", "approval.poll_s=1")
    reviewer.join()
    assert (first.built, first.report.base, first.report.version, first.report.alias) == (True, "zhasr-test v1", "1",
                                                                                          "challenger")
    assert first.approval == Approval("approved", "1", "ana", "heard every kind")
    assert "model_card" not in first.to_dict()
    detectors = MlflowClient().get_registered_model("zhasr-detector")
    assert {k: str(v) for k, v in detectors.aliases.items()} == {"champion": "1"}

    skipped = detector_flow()
    assert not skipped.built and skipped.reason.startswith("zhasr-detector v1 was built on zhasr-test v1 with "
                                                           "these settings (")
    assert skipped.reason.endswith("; gate pass)")
    assert detector_flow("detector.seed=780").report.version == "2"  # other settings: built again on the same base
    assert not detector_flow("detector.seed=780", "approval.timeout_s=5", "detector.cron=0 5 * * *").built

    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    promote()
    assert main(["approve", "2", "--by", "carol", "--note", "first adapter"]) == 0
    second = detector_flow()
    assert (second.built, second.report.base, second.report.version, second.approval) == (True, "zhasr-test v2", "3",
                                                                                           None)


def _tone_batch(project, batch: str, texts: list[str]) -> None:
    for i in range(len(texts)):
        write_tone(project / "data/incoming" / batch / f"{i}.wav", 1.5 + 0.1 * i)
    write_batch(project / "data/incoming", batch, [
        {"id": f"{batch}-{i}", "audio": f"{i}.wav", "text": t, "speaker": f"{batch}-s{i}"} for i, t in enumerate(texts)])


def test_zhasr_schedule_hands_its_params_file_and_overrides_to_the_runs_it_serves(project, tmp_path):
    """The flows a scheduled run executes are imported again in the run's own process: their options (retries, the
    archive's task runner) and their parameters come from ``zhasr schedule``'s --params and --set, not from the
    project's params.yaml."""
    import os
    import subprocess
    import sys

    from flows.schedule import SCHEDULED_PARAMS_ENV, archive_deployment, deployment

    other = tmp_path / "night.yaml"
    other.write_text((project / "params.yaml").read_text(encoding="utf-8") + "\nschedule: {retries: 4}\n",
                     encoding="utf-8")
    overrides = ["archive.source=/calls/tonight", "archive.address=tcp://127.0.0.1:8786"]
    params = load_params(other, overrides)
    assert deployment(params, other, overrides).parameters == {
        "params_path": str(other), "overrides": overrides, "only_if_new_data": True}
    assert archive_deployment(params, other, overrides).parameters["overrides"] == overrides

    show = ("from flows.schedule import scheduled_archive, scheduled_retrain; "
            "print(scheduled_retrain.retries, scheduled_archive.task_runner.address)")
    env = {**os.environ, SCHEDULED_PARAMS_ENV: json.dumps([str(other), overrides])}
    shown = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert shown.stdout.split() == ["4", "tcp://127.0.0.1:8786"]


def test_scheduled_run_with_no_new_batch_trains_nothing(prefect_server, ctx, project, tiny_model_dir, capsys):
    from flows.retrain import retrain
    from flows.schedule import deployment
    from tasks.pipeline import nothing_new

    _tone_batch(project, "b1", ["您好请问", "订单号一二三", "退款到账了吗"])
    assert main(["ingest"]) == 0 and main(["validate"]) == 0
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    promote()  # v2, trained on this very dataset
    capsys.readouterr()

    scheduled = deployment(ctx.params)
    assert scheduled.concurrency_limit == 1 and scheduled.parameters["only_if_new_data"] is True
    assert scheduled.schedules[0].schedule.cron == "0 2 * * *"
    assert scheduled.entrypoint == "flows.schedule.scheduled_retrain"
    from flows.schedule import scheduled_retrain

    assert scheduled_retrain.retries == ctx.params.schedule.retries

    runs_before = len(MlflowClient().search_runs([MlflowClient().get_experiment_by_name("zhasr-test").experiment_id]))
    state = retrain(**scheduled.parameters, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result.trained is False and "no new validated batch" in result.reason
    assert not (project / "runs").exists()  # no training started
    runs_after = len(MlflowClient().search_runs([MlflowClient().get_experiment_by_name("zhasr-test").experiment_id]))
    assert runs_after == runs_before  # not even an MLflow run
    # run by hand, the same: only --force trains on an unchanged dataset
    assert main(["retrain"]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] is False and not (project / "runs").exists()

    # A new batch whose every row fails validation is ingested and quarantined, and still trains nothing.
    _tone_batch(project, "b2", ["这一句话对一秒多的音频来说实在是太长太长太长了根本不可能说完的" * 2] * 2)
    assert nothing_new(ctx) is None  # b2 is pending
    result = retrain(**scheduled.parameters)
    assert result.trained is False and "no new validated batch" in result.reason
    assert (project / "data/quarantine/b2/rejected.jsonl").read_text().count("\n") == 2
    assert not (project / "runs").exists()  # no training started


def test_register_retries_only_transient_failures():
    from prefect.states import Failed

    from tasks.pipeline import is_transient_failure

    def retried(exc: BaseException) -> bool:
        return is_transient_failure(None, None, Failed(data=exc))

    assert retried(ConnectionError("Connection refused"))
    assert retried(RuntimeError("(sqlite3.OperationalError) database is locked"))
    assert retried(RuntimeError("API request failed: Max retries exceeded with url: /api/2.0/mlflow/..."))
    assert not retried(KeyError("zhasr.gate"))
    assert not retried(ValueError("reports/gate.json: not found"))


def test_an_old_candidate_a_stale_reject_and_a_retried_registration_change_nothing(prefect_server, ctx,
                                                                                     tiny_model_dir, monkeypatch,
                                                                                     capsys):
    """An answer to an old question (v2's form, after v3 was approved) does not demote the champion; a reject of a
    version that is not the challenger writes no alias change; a register task retried after it registered
    (the store locked while the card was written) makes no second version."""
    for _ in range(2):  # v2 and v3
        write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
        promote()
    assert main(["approve", "3", "--by", "carol", "--note", "more data"]) == 0
    capsys.readouterr()
    assert main(["approve", "2", "--by", "alice", "--note", "the form of last week"]) == 2
    assert "v2: registered before the champion v3" in capsys.readouterr().err
    history = len(registry.alias_history(NAME))
    assert main(["reject", "2", "--by", "dan", "--note", "x"]) == 2
    assert "v2 is not the challenger (no version is the challenger)" in capsys.readouterr().err
    assert len(registry.alias_history(NAME)) == history and aliases() == {"champion": "3"}

    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    publish, attempts = registry.publish_card, []

    def locked_once(*args, **kwargs):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return publish(*args, **kwargs)

    monkeypatch.setattr(registry, "publish_card", locked_once)
    assert promote().registration.version == "4" and len(attempts) == 2
    assert sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{NAME}'")) == [1, 2, 3, 4]
    assert aliases() == {"champion": "3", "challenger": "4"}


def test_a_prune_and_a_decision_at_the_same_moment_never_lose_the_champion(prefect_server, ctx, tiny_model_dir,
                                                                           monkeypatch):
    """Prune marks a version, then looks for aliases and leases again; approve and rollback read the mark after
    they set the alias. Whichever comes second backs off: the champion's files are never deleted."""
    from mlflow_services import in_use, retention
    from mlflow_services.errors import PromotionError
    from zhasr.config import RegisterParams

    for _ in range(3):  # champions v2, then v3, then v4
        write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
        version = promote().registration.version
        promotion.approve(NAME, version, by="carol", note="better")
    client, mark = MlflowClient(), MlflowClient.set_model_version_tag

    def then_rollback(self, name, number, key, value):  # a rollback to v1 between the mark and the look after
        mark(self, name, number, key, value)
        if key == registry.PRUNED_TAG and number == "1":
            registry.change_alias(name, registry.CHAMPION, "1", action="rollback", by="ops", note="now")

    rule = RegisterParams(model_name=NAME, keep_newest=1, keep_champions=1)
    with monkeypatch.context() as patched:
        patched.setattr(MlflowClient, "set_model_version_tag", then_rollback)
        report = retention.prune(NAME, rule)
    assert [(f.version, f.kept) for f in report.versions if f.version in ("1", "2")] == [("2", False), ("1", True)]
    kept = client.get_model_version(NAME, "1")
    assert registry.PRUNED_TAG not in kept.tags and (registry.whisper_dir(kept) / "config.json").is_file()

    # the other order: the mark lands between approve setting the alias and reading the mark
    write_evaluation(ctx, tiny_model_dir, candidate_every=10, champion_every=3)
    candidate = promote().registration.version
    decisions, give = len(registry.alias_history(NAME)), MlflowClient.set_registered_model_alias

    def marked_meanwhile(self, name, alias, number):
        give(self, name, alias, number)
        if number == candidate:
            client.set_model_version_tag(name, number, registry.PRUNED_TAG, "a prune meanwhile")

    with monkeypatch.context() as patched, pytest.raises(
            PromotionError, match=f"v{candidate}: a prune took its files meanwhile; the champion stays v1"):
        patched.setattr(MlflowClient, "set_registered_model_alias", marked_meanwhile)
        promotion.approve(NAME, candidate, by="carol", note="better")
    assert aliases()["champion"] == "1" and len(registry.alias_history(NAME)) == decisions  # nothing recorded

    # a lease whose end cannot be read holds its version; a run gone from the store leaves its version's row
    client.set_model_version_tag(NAME, "3", in_use.TAG_PREFIX + "host-1-ab12", "zhasr serve, until soon")
    assert "an unreadable lease" in in_use.held_by(client.get_model_version(NAME, "3"))
    client.set_model_version_tag(NAME, "3", in_use.TAG_PREFIX + "host-1-ab12", "2026-01-01T00:00:00+00:00 zhasr serve")
    assert in_use.held_by(client.get_model_version(NAME, "3")) == ""  # the first format, ended
    from mlflow.tracking._tracking_service.utils import _get_store

    run_id = client.get_model_version(NAME, "3").run_id
    client.delete_run(run_id)
    _get_store()._hard_delete_run(run_id)  # what `mlflow gc` does
    rows = {row["version"]: row for row in promotion.status(NAME).versions}
    assert rows["3"]["git"] == "" and rows["3"]["gate"] == "pass"
