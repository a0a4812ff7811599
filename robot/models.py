"""Hot-reloaded files under ROBOT_MODELS_DIR.

* ``system_prompt.txt`` — the persona: sent as the first ``system`` message of every
  conversation (absent or empty = no system message). Read up to 64 KiB.
* ``model.json`` — optional JSON object overriding request parameters: ``model``,
  ``temperature``, ``top_p``, ``max_tokens``, ``presence_penalty``,
  ``frequency_penalty``, ``stop``, ``seed``. Unknown keys are ignored.

The directory is polled every ROBOT_MODELS_POLL_SECONDS (a stat per file, no read
unless size/mtime/inode changed) and on SIGHUP. A file that fails to parse leaves the
previous value in force and logs an error.
"""

from __future__ import annotations

import json
import os

PROMPT_FILE = "system_prompt.txt"
PARAMS_FILE = "model.json"
ALLOWED_PARAMS = ("model", "temperature", "top_p", "max_tokens", "presence_penalty",
                  "frequency_penalty", "stop", "seed")
_MAX = 65536


def _sig(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelFiles:
    def __init__(self, directory: str):
        self.directory = directory
        self.system_prompt: str | None = None
        self.params: dict = {}
        self._sigs: dict[str, object] = {}
        self.version = 0

    def scan(self) -> list[tuple[str, str | None]]:
        """Re-read changed files. Returns [(file, error or None)] for each change seen."""
        changes = []
        for name, loader in ((PROMPT_FILE, self._load_prompt), (PARAMS_FILE, self._load_params)):
            path = os.path.join(self.directory, name)
            sig = _sig(path)
            if sig == self._sigs.get(name, False):
                continue
            self._sigs[name] = sig
            try:
                loader(path if sig is not None else None)
                changes.append((name, None))
            except (OSError, ValueError) as exc:
                changes.append((name, f"{type(exc).__name__}: {exc}"[:200]))
        if changes:
            self.version += 1
        return changes

    def _load_prompt(self, path: str | None) -> None:
        if path is None:
            self.system_prompt = None
            return
        with open(path, encoding="utf-8") as fh:
            text = fh.read(_MAX).strip()
        self.system_prompt = text or None

    def _load_params(self, path: str | None) -> None:
        if path is None:
            self.params = {}
            return
        with open(path, encoding="utf-8") as fh:
            data = json.loads(fh.read(_MAX) or "{}")
        if not isinstance(data, dict):
            raise ValueError("model.json must hold a JSON object")
        params = {k: data[k] for k in ALLOWED_PARAMS if k in data}
        if "model" in params and (not isinstance(params["model"], str) or not params["model"]):
            raise ValueError("model.json: 'model' must be a non-empty string")
        self.params = params
