"""Undefined use cases: a Pay-i that requires definitions answers ``use_case_not_found``.

With ``create_use_cases`` the sender defines each such use case once (per sender) and sends
its events once more; without it, or if that fails too, the rows fail saying how to define it.
"""

from __future__ import annotations

from typing import Any

from ..client import PayiError
from .jobs import Job
from .state import SenderState, log

USE_CASE_NOT_FOUND = "use_case_not_found"
USE_CASE_HEADER = "xProxy-UseCase-Name"


def undefined_use_case(error: dict[str, Any]) -> bool:
    """A bulk item's error says its use case is not defined."""
    return (error.get("xproxy_error") or {}).get("code") == USE_CASE_NOT_FOUND


def use_case_hint(job: Job, err: PayiError) -> str:
    """How to fix a ``use_case_not_found`` refusal, in the row's error."""
    name = job.headers.get(USE_CASE_HEADER)
    if err.code != USE_CASE_NOT_FOUND or not name:
        return ""
    return f" (define it with pn.use_cases.create({name!r}, description=...), then run the cell again)"


class UseCases(SenderState):
    def _define_use_cases(self, jobs: list[Job]) -> bool:
        """Define the jobs' use cases at Pay-i (each name once), then send each job once more."""
        names = [job.headers.get(USE_CASE_HEADER) for job in jobs]
        if not self.create_use_cases or any(job.use_case_retried for job in jobs):
            return False
        named: list[tuple[Job, str]] = []
        for job, name in zip(jobs, names):
            if name is None:
                return False
            named.append((job, name))
        for job, name in named:
            job.use_case_retried = True
            waiting = self._defining.get(name)
            if waiting is not None:
                waiting.append(job)  # its definition is on the way
            elif name in self._defined:
                self._ready.appendleft(job)
            else:
                self._defining[name] = [job]
                self._requests += 1
                self._spawn(self._define(name))
        return True

    async def _define(self, name: str) -> None:
        from ..analytics import routes  # rarely needed

        try:
            await self._client.run(routes.create_use_case(name, routes.AUTO_DESCRIPTION))  # type: ignore[union-attr]
            log.info("payi_notebook: defined use case %r at Pay-i (it answered use_case_not_found)", name)
        except PayiError as err:  # already there (a race): sending again is right; else they fail, saying why
            self.problem(f"could not define use case {name!r}: {err}")
        finally:
            self._defined.add(name)
            self._ready.extendleft(reversed(self._defining.pop(name, [])))
            self._requests -= 1
            self._wake.set()
