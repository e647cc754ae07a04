"""The merge guard's reading of general speech: a loss over the limit, beyond its noise or not."""

from zhasr.model.merge import GeneralSpeechLoss, next_adapter_weight

LIMIT = 0.02  # gate.max_regression_loss: 2 points
SPEAKERS = [f"s{i}" for i in range(10)]  # the tuning half: ten clips of ten speakers
CHARS = [54] * 10


def test_a_loss_a_character_over_the_limit_on_two_speakers_is_noise():
    # 11 characters more on 540, all of them on two of ten speakers, and 2 fewer on a third
    reference = [10] * 10
    candidate = [17, 16] + [8] + [10] * 7
    loss = GeneralSpeechLoss.of(candidate, reference, CHARS, SPEAKERS)
    assert loss.loss > LIMIT and loss.low <= 0 < loss.high
    assert not loss.over(LIMIT, beyond_noise=True)
    assert loss.over(LIMIT, beyond_noise=False)  # the point estimate alone steps the weight down


def test_a_loss_every_speaker_shows_counts_either_way():
    loss = GeneralSpeechLoss.of([13] * 10, [10] * 10, CHARS, SPEAKERS)  # 3 more a speaker: +5.6 points
    assert loss.low > 0 and loss.over(LIMIT, beyond_noise=True) and loss.over(LIMIT, beyond_noise=False)
    within = GeneralSpeechLoss.of([11] * 10, [10] * 10, CHARS, SPEAKERS)  # +1.9 points, every speaker
    assert within.low > 0 and not within.over(LIMIT, beyond_noise=True)


def test_the_next_weight_aims_under_the_limit_with_room_to_spare():
    # linear in the weight from the start model (loss 0): 2.02 points at 0.7 -> 0.6 (1.73 points, under 1.8)
    assert next_adapter_weight(0.7, 0.0202, 0.0, LIMIT, 0.3) == 0.6
    assert next_adapter_weight(0.7, 0.10, 0.0, LIMIT, 0.3) == 0.3  # not below the floor
    # the start model loses more: the weight does not explain the loss, one grid step lower
    assert next_adapter_weight(0.7, 0.0201, 0.03, LIMIT, 0.3) == 0.65
