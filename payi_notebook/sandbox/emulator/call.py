"""One request as the route handlers see it, after auth, JSON parsing and fault resolution."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .faults import Faults
from .prompt_cache import PromptCache


@dataclass
class Call:
    """The parsed body, the model without its fault suffix, the faults and the prompt cache."""

    body: dict[str, Any]
    model: str
    faults: Faults
    request_id: str
    cache: PromptCache
    params: dict[str, str] = field(default_factory=dict)  # path parameters (deployment, model, action)
    created: int = field(default_factory=lambda: int(time.time()))
