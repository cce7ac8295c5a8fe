"""Publishing the LoRA adapter atomically (the layout is the backend's, see
:mod:`rs_reasoner.segmenters.reasoning.adapter`).

The folder is written under a temporary name and renamed into place in one step, so a
reader (or a run killed mid-write) sees a complete ``adapter-<step>`` folder or none.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.segmenters.reasoning.adapter import ADAPTER_META, adapter_dir_name


def publish_adapter(model: Any, folder: Path, step: int, meta: dict[str, Any]) -> Path:
    """Write the adapter of ``model`` (a PEFT model) as ``folder/adapter-<step>``.

    Args:
        model: The PEFT model.
        folder: The run's folder.
        step: Optimizer steps done (names the folder).
        meta: Description saved as ``reasoner.json`` (written last).

    Returns:
        The published folder (a complete one of the same step is kept as it is).
    """
    final = folder / adapter_dir_name(step)
    if (final / ADAPTER_META).is_file():
        return final
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    write_text_atomic(tmp / ADAPTER_META, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)  # a leftover without meta is incomplete
    os.replace(tmp, final)
    return final
