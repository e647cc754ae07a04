"""The MLflow pyfunc wrapper each registered version is logged with: wav paths in, Chinese text out.

Serve with ``mlflow models serve -m models:/<name>@champion`` and POST
``{"dataframe_records": [{"audio": "/path/clip.wav"}]}`` to ``/invocations``.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd


class WhisperTranscriber(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with an ``audio`` column of file paths. Output: one transcript per row."""

    def load_context(self, context) -> None:
        from zhasr.models import load_model

        self.model, self.processor = load_model(Path(context.artifacts["whisper"]))
        self.language = context.model_config.get("language", "zh") if context.model_config else "zh"

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        from zhasr.audio import load_16k
        from zhasr.decode import DecodeOptions, transcribe

        clips = [load_16k(Path(p)) for p in model_input["audio"]]
        return [t.text for t in transcribe(self.model, self.processor, clips, DecodeOptions(language=self.language))]
