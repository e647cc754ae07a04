"""How much a round trains: steps from the data and the time budget; which clips, new and replayed."""

import dataclasses

import pytest
from conftest import manifest_row

from zhasr.config import TrainParams
from zhasr.data.manifest import ManifestRow
from zhasr.model.recipe import plan_steps, select_rows

PARAMS = TrainParams(epochs=3.0, max_steps=0, time_budget_s=0, batch_size=8, evaluations=4, warmup_ratio=0.1)


@pytest.mark.parametrize("clips, steps, eval_every", [(102, 36, 9), (204, 76, 19), (306, 112, 28), (8, 3, 1)])
def test_steps_follow_the_size_of_the_round(clips, steps, eval_every):
    plan = plan_steps(clips, PARAMS)
    assert (plan.steps, plan.eval_every, plan.limited_by) == (steps, eval_every, "epochs")
    assert plan.steps % plan.eval_every == 0  # the last step is evaluated
    assert plan.warmup_steps == round(0.1 * steps)


def test_the_time_budget_and_max_steps_cap_the_steps():
    budget = dataclasses.replace(PARAMS, time_budget_s=200.0)
    assert plan_steps(306, budget, step_seconds=4.0).limited_by == "time_budget"
    assert plan_steps(306, budget, step_seconds=4.0).steps == 48  # 50 fit, rounded down to 4 x 12
    assert plan_steps(102, budget, step_seconds=4.0).limited_by == "epochs"  # 39 steps fit in the budget
    assert plan_steps(306, budget).limited_by == "epochs"  # no step time measured: no cap
    capped = dataclasses.replace(PARAMS, max_steps=20)
    assert (plan_steps(306, capped).steps, plan_steps(306, capped).limited_by) == (20, "max_steps")
    assert plan_steps(306, PARAMS, processes=2).steps == 56  # two processes: half the steps


def rows(batch: str, n: int) -> list[ManifestRow]:
    return [manifest_row(id=f"{batch}-{i}", batch=batch) for i in range(n)]


def test_from_the_base_model_a_round_trains_on_every_clip():
    chosen = select_rows(rows("b1", 10) + rows("b2", 4), set(), "base", 1.0)  # the base model learned nothing
    assert (len(chosen.rows), chosen.new, chosen.replayed, chosen.learned_batches) == (14, 14, 0, ["b1", "b2"])


def test_from_the_champion_a_round_trains_on_the_new_batches_and_replays_earlier_ones():
    train = rows("b1", 10) + rows("b2", 6) + rows("b3", 4)
    chosen = select_rows(train, {"b1", "b2"}, "champion", 0.5, seed=3)
    assert [r.id for r in chosen.rows[:4]] == [f"b3-{i}" for i in range(4)]
    assert (chosen.new, chosen.replayed, chosen.learned_batches) == (4, 2, ["b1", "b2", "b3"])
    assert {r.batch for r in chosen.rows[4:]} <= {"b1", "b2"}
    assert chosen.rows == select_rows(train, {"b1", "b2"}, "champion", 0.5, seed=3).rows  # the same draw
    assert select_rows(train, {"b1", "b2"}, "champion", 10.0).replayed == 16  # at most every earlier clip
    assert select_rows(train, {"b1", "b2", "b3"}, "champion", 1.0).replayed == 20  # nothing new: all again
