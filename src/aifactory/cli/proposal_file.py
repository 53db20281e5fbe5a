"""A proposal written as YAML (`aif proposals create --from FILE`): sections and rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aifactory.errors import Invalid

EXAMPLE = """\
title: Finnish small language model
summary: Pre-train a 1B model on Finnish public-domain text.
duration_months: 3
resources:
  - {partition: LUMI-AI/gpu, gpu_hours: 12000, justification: pre-training, 3 runs}
sections:
  team:
    - {name: Aino Virtanen, role: PI, organisation: Nordic Tokens Oy, expertise: NLP}
  technical: {method: decoder-only transformer, software: PyTorch 2, scaling: ..., workflow: ...}
  data: {datasets: ..., sources: ..., licences: CC-BY, personal_data: false}
  ethics:
    human_participants: {answer: false}
"""


def proposal_file(path: Path) -> dict[str, Any]:
    """The fields the file gives (its keys are the API's).

    Raises:
        Invalid: ``from`` with rule ``yaml`` (unreadable) or ``mapping`` (not key: value).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise Invalid.field("from", "yaml", f"{path}: not readable YAML ({exc})") from exc
    if not isinstance(data, dict):
        msg = f"{path}: expected key: value pairs, such as\n{EXAMPLE}"
        raise Invalid.field("from", "mapping", msg)
    return {str(k): v for k, v in data.items()}
