"""The labelling config every zhasr project in Label Studio uses: the call's audio with one waveform per
channel, a role label and a transcription per region. Exports are read by these names."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

AUDIO = "audio"  # the Audio tag's name; tasks carry the audio URL under data["audio"]
ROLE = "speaker"  # Labels: the region's role (agent, customer)
TEXT = "transcription"  # TextArea, per region: what was said
UNKNOWN_ROLE = "unknown"  # a region of a one-track (mixed) call: who spoke is for the person to say


def label_config(roles: Sequence[str]) -> str:
    """The XML labelling config: ``roles`` as region labels (channel k is ``roles[k]``), and ``unknown``."""
    labels = "\n".join(f"    <Label value={quoteattr(role)}/>" for role in [*roles, UNKNOWN_ROLE])
    return (f'<View>\n  <Audio name="{AUDIO}" value="${AUDIO}" splitchannels="true"/>\n'
            f'  <Labels name="{ROLE}" toName="{AUDIO}">\n{labels}\n  </Labels>\n'
            f'  <TextArea name="{TEXT}" toName="{AUDIO}" perRegion="true" editable="true" rows="2" '
            f'placeholder="what was said in this region"/>\n</View>\n')


def region_items(region_id: str, start_s: float, end_s: float, channel: int, role: str, text: str,
                 score: float | None = None) -> list[dict]:
    """The two result items of one region (its role label and its text), sharing ``region_id``."""
    value = {"start": round(start_s, 3), "end": round(end_s, 3), "channel": channel}
    items = [{"id": region_id, "from_name": ROLE, "to_name": AUDIO, "type": "labels",
              "value": {**value, "labels": [role]}},
             {"id": region_id, "from_name": TEXT, "to_name": AUDIO, "type": "textarea",
              "value": {**value, "text": [text]}}]
    if score is not None:
        for item in items:
            item["score"] = round(score, 4)
    return items
