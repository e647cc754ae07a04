"""The labelling loop with Label Studio: calls out with the champion's segments as predictions, people's
corrected regions back as a batch (``interface``: the labelling config; ``calls``: the tasks and their
audio; ``selection``: which calls first; ``export``: reading the full JSON export; ``pull_batch``: the
batch it becomes; ``studio``: the label-studio-sdk client)."""
