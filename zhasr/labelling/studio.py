"""Label Studio through label-studio-sdk: the project, the permission to serve the calls' audio, tasks with
predictions, and the full JSON export."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhasr.labelling.calls import CALLS_DIR
from zhasr.labelling.interface import AUDIO, ROLE, TEXT

TOKEN_ENV = "LABEL_STUDIO_API_KEY"


class StudioError(RuntimeError):
    """Label Studio cannot be reached or used; the message says which address and what to do."""


def api_token(token_file: Path) -> str:
    """``LABEL_STUDIO_API_KEY``, else the token ``make labelstudio`` wrote to ``token_file``."""
    token = os.environ.get(TOKEN_ENV) or (Path(token_file).read_text().strip() if Path(token_file).is_file() else "")
    if not token:
        raise StudioError(f"no Label Studio API token: set {TOKEN_ENV} or run `make labelstudio`, which writes "
                          f"{token_file}")
    return token


class Studio:
    """One Label Studio at ``url``; every call raises StudioError naming it when it does not answer."""

    def __init__(self, url: str, token: str):
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.client = LabelStudio(base_url=self.url, api_key=token, timeout=60)
        try:
            self.client.users.whoami()
        except Exception as exc:  # connection refused, 401: both mean nothing can be done here
            raise StudioError(f"Label Studio at {self.url} does not answer with this token ({exc}); "
                              "start it with `make labelstudio`") from exc

    def project(self, title: str, label_config: str) -> int:
        """The id of the project titled ``title``, created with ``label_config`` when there is none; a project
        whose config lacks zhasr's names is refused."""
        found = [p for p in self.client.projects.list(title=title) if p.title == title]
        if not found:
            return self.client.projects.create(title=title, label_config=label_config).id
        project = self.client.projects.get(found[0].id)
        missing = [f'name="{n}"' for n in (AUDIO, ROLE, TEXT) if f'name="{n}"' not in (project.label_config or "")]
        if missing:
            raise StudioError(f"Label Studio project {title!r} (id {project.id}) has a labelling config without "
                              f"{', '.join(missing)}; zhasr reads only its own config: choose another label.project")
        return project.id

    def serve_calls(self, project_id: int, labelling_dir: Path) -> None:
        """Let Label Studio serve ``<labelling_dir>/calls`` to the project's users (a local-files storage; its
        document root must be ``labelling_dir``, as ``make labelstudio`` sets it)."""
        calls = str((Path(labelling_dir) / CALLS_DIR).resolve())
        Path(calls).mkdir(parents=True, exist_ok=True)
        if any(s.path == calls for s in self.client.import_storage.local.list(project=project_id)):
            return
        try:
            self.client.import_storage.local.create(project=project_id, path=calls, use_blob_urls=True,
                                                    title="zhasr calls")
        except Exception as exc:
            raise StudioError(f"Label Studio at {self.url} refuses to serve {calls} ({exc}): start it with "
                              f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                              f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={Path(labelling_dir).resolve()} "
                              "(`make labelstudio` does)") from exc

    def pushed(self, project_id: int) -> set[str]:
        """audio_sha256 of the calls the project already has."""
        return {(t.data or {}).get("audio_sha256") for t in self.client.tasks.list(project=project_id, page_size=500)}

    def add_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        if not tasks:
            return []
        return list(self.client.projects.import_tasks(project_id, request=list(tasks), return_task_ids=True).task_ids)

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """The full JSON export of every task (annotated or not, skipped ones too)."""
        blob = b"".join(self.client.projects.exports.download_sync(project_id, export_type="JSON",
                                                                   download_all_tasks=True))
        return json.loads(blob)
