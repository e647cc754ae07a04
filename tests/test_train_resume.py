"""A training run killed with SIGKILL resumes from its last checkpoint and ends at the same step, on the
same clips: a retried scheduled run continues its round even when a new batch arrived meanwhile."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import write_tone, write_tone_batch
from test_ingest import write_batch

from zhasr.data.manifest import read_jsonl
from zhasr.model.train import complete_checkpoints


def _zhasr(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_kill_9_then_resume_reaches_max_steps(project, tiny_model_dir):
    write_tone_batch(project / "data" / "incoming", "b1", 4)
    env = {**os.environ, "ZHASR_ROOT": str(project)}
    overrides = ["--set", "ingest.test_fraction=0.0", "--set", "train.epochs=4", "--set", "train.max_steps=8",
                 "--set", "train.evaluations=4", "--set", "train.pack_window_s=0"]
    for stage in ("ingest", "validate"):
        assert _zhasr(stage, *overrides, env=env).wait(timeout=300) == 0
    assert len(read_jsonl(project / "data/dataset/manifest.jsonl")) == 4

    checkpoints = project / "runs" / "train" / "checkpoints"
    first = _zhasr("train", *overrides, env=env)
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint-4" / "trainer_state.json").is_file():
        assert first.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (project / "reports" / "train.json").exists()
    plan = json.loads((project / "runs" / "train" / "plan.json").read_text(encoding="utf-8"))
    assert (plan["steps"], plan["eval_every"], sorted(plan["rows"])) == (8, 2, ["0", "1", "2", "3"])

    # A new batch lands before the retry: ingest and validate run again, the round stays as planned.
    for i in range(4, 8):
        write_tone(project / "data" / "incoming" / "b2" / f"{i}.wav", 1.2, freq=200 + 30 * i)
    write_batch(project / "data" / "incoming", "b2", [{"id": str(i), "audio": f"{i}.wav", "text": "您好请问",
                                                        "speaker": f"s{i}"} for i in range(4, 8)])
    for stage in ("ingest", "validate"):
        assert _zhasr(stage, *overrides, env=env).wait(timeout=300) == 0
    assert len(read_jsonl(project / "data/dataset/manifest.jsonl")) == 8

    resumed = _zhasr("train", "--resume", *overrides, env=env)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0
    summary = json.loads(out)  # stdout holds only the result; logs go to stderr
    assert summary == json.loads((project / "reports" / "train.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 8 and summary["train_clips"] == 4 and summary["planned_steps"] == 8
    assert json.loads((project / "runs" / "train" / "plan.json").read_text(encoding="utf-8")) == plan
    logged_steps = [step for step, _ in summary["loss_history"]]
    assert logged_steps[0] > 1 and logged_steps[-1] == 8  # continued, not restarted


def test_checkpoint_cut_short_while_saving_is_set_aside(tmp_path):
    """The Trainer writes trainer_state.json last: a checkpoint without it was interrupted mid-save."""
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    assert (tmp_path / "incomplete-checkpoint-6" / "adapter_model.safetensors").is_file()  # kept, not deleted
