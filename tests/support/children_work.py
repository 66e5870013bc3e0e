"""Work for child processes in tests: importable by spawn and forkserver children (a notebook's
functions are not). Each task makes its own client, as code in a child process should."""

from __future__ import annotations

import os

from openai import OpenAI

MESSAGES = [{"role": "user", "content": "One line from a child process, please."}]


def chat(task: tuple[str, int]) -> tuple[int, list[str]]:
    """``n`` chat calls to the emulator at ``url``: (this process's pid, the response ids)."""
    url, n = task
    client = OpenAI(base_url=url + "/v1", api_key="sk-child-SECRET", max_retries=0)
    ids = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id for _ in range(n)]
    client.close()
    return os.getpid(), ids
