"""The options of ``%%payi`` (and of ``%payi on``): declared with IPython's ``magic_arguments``,
checked by ``context.check_options`` before the cell's body runs (``UsageError`` on anything wrong)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from .context import ContextError, check_options, parse_property


@magic_arguments()
@argument("--use-case", dest="use_case_name", metavar="NAME", help="use case name ([A-Za-z0-9._-], ≤ 64 chars)")
@argument("--use-case-id", metavar="ID", help="use case instance id (default: a new one per new name)")
@argument("--use-case-version", metavar="N", help="use case version (positive integer)")
@argument("--step", dest="use_case_step", metavar="STEP", help="use case step")
@argument("--user", dest="user_id", metavar="ID", help="user id")
@argument("--account", dest="account_name", metavar="NAME", help="account name")
@argument("--limit", dest="limit_ids", action="append", metavar="ID", help="limit id (repeatable)")
@argument("--prop", dest="props", action="append", metavar="KEY=VALUE", help="request property (repeatable)")
@argument("--proxy", action="store_true", help="route calls through the Pay-i proxy")
@argument("--telemetry", action="store_true", help="call providers directly; ingest after")
@argument("--no-log", dest="log", action="store_false", default=None, help="keep prompts and responses out of Pay-i")
@argument("--quiet", action="store_true", help="no summary line under the cell")
@argument("--budget", metavar="USD", help="the cell's budget in USD: a call that could pass it is refused before it is sent")
@argument("--estimate", metavar="N", nargs="?", const="3", help="run the first N calls (default 3), stop, project the cell's cost")
def cell_options(line: str) -> None:
    """Options of ``%%payi`` (and of ``%payi on``)."""


def parse_cell_options(
    words: list[str], resolve_limits: Callable[[list[str]], Any] | None = None
) -> tuple[dict[str, Any], bool]:
    """Cell options (already split, see ``argline``) checked as ``check_options`` gives them, and
    the quiet flag; UsageError on anything wrong. ``resolve_limits`` turns limit names into ids."""
    try:
        args = cell_options.parser.parse_args(words)
    except UsageError:
        raise
    except SystemExit:  # argparse's way of saying "bad arguments"
        raise UsageError(f"invalid %%payi options: {' '.join(words)!r}; see %%payi?") from None
    if args.proxy and args.telemetry:
        raise UsageError("--proxy and --telemetry exclude each other: give one")
    from .budgets import check_budget
    from .budgets.cells import check_estimate

    try:
        limit_ids = resolve_limits(args.limit_ids) if resolve_limits and args.limit_ids else args.limit_ids
        options = check_options(
            use_case_name=args.use_case_name,
            use_case_id=args.use_case_id,
            use_case_version=args.use_case_version,
            use_case_step=args.use_case_step,
            user_id=args.user_id,
            account_name=args.account_name,
            limit_ids=limit_ids,
            properties=dict(parse_property(p) for p in args.props) if args.props else None,
            proxy=True if args.proxy else False if args.telemetry else None,
            log_prompt_and_response=args.log,
        )
        options["budget"] = check_budget(args.budget, "--budget")
        options["estimate"] = check_estimate(args.estimate)
    except ContextError as exc:
        raise UsageError(str(exc)) from None
    return options, bool(args.quiet)
