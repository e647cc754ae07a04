"""The MLflow pyfunc wrapper each registered version is logged with: audio bytes in, Chinese text out.

The ``audio`` column holds each file's bytes, base64-encoded; a path is never opened (a scoring
server must not read files a client names). Decoding is the transcription engine's: any format,
any length, VAD pieces, the guard. Serve with ``mlflow models serve -m models:/<name>@champion``
and POST ``{"dataframe_records": [{"audio": "<base64>"}]}`` to ``/invocations``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from pathlib import Path

import mlflow.pyfunc
import pandas as pd


class WhisperTranscriber(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with an ``audio`` column of base64 file bytes. Output: one transcript per row."""

    def load_context(self, context) -> None:
        from zhasr.config import TranscribeParams
        from zhasr.transcribe import Transcriber

        config = context.model_config or {}
        known = {f.name for f in dataclasses.fields(TranscribeParams)}
        params = TranscribeParams(**{k: v for k, v in config.get("transcribe", {}).items() if k in known})
        self.transcriber = Transcriber.open(Path(context.artifacts["whisper"]), params,
                                            language=config.get("language", "zh"), runtime="transformers")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from zhasr.data.audio import AudioError

        try:
            blobs = []
            for i, value in enumerate(model_input["audio"]):
                try:
                    blobs.append(base64.b64decode(value, validate=True))
                except (binascii.Error, TypeError, ValueError) as exc:
                    raise AudioError(f"row {i}: audio is not base64-encoded file bytes ({exc})") from exc
            results = self.transcriber.transcribe_many(blobs, names=[f"row {i}" for i in range(len(blobs))])
        except AudioError as exc:  # the client's input: a 400 that says why, not a server error
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
        return [r.text for r in results]
