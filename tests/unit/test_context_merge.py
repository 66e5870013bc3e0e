"""``context.merge``: how a nested scope's options combine with its parent's (through ``derive``,
which validates first). The rules: a child's value wins, ``None`` inherits, an empty value clears."""

from __future__ import annotations

import pytest

from payi_notebook.context import Context, ContextError, check_options, derive, merge

PARENT = derive(
    Context(),
    use_case_name="summarize",
    use_case_id="uc-1",
    use_case_version=2,
    use_case_step="draft",
    user_id="ana",
    account_name="acme",
    limit_ids=["team-q4"],
    properties={"team": "search", "run": 7},
    use_case_properties={"ticket": "T-1"},
    proxy=True,
    log_prompt_and_response=False,
)


def test_options_left_unset_inherit_everything() -> None:
    assert merge(PARENT, check_options()) == PARENT


def test_a_childs_values_win_over_its_parents() -> None:
    child = derive(PARENT, use_case_step="final", user_id="bo", account_name="globex", proxy=False, log_prompt_and_response=True)
    assert (child.use_case_step, child.user_id, child.account_name) == ("final", "bo", "globex")
    assert (child.proxy, child.log_prompt_and_response) == (False, True)
    assert (child.use_case_name, child.use_case_id, child.use_case_version) == ("summarize", "uc-1", 2)


def test_empty_text_clears_a_parents_value() -> None:
    child = derive(PARENT, user_id="", account_name="", use_case_step="")
    assert (child.user_id, child.account_name, child.use_case_step) == (None, None, None)
    assert child.use_case_name == "summarize"


def test_a_new_use_case_name_starts_a_fresh_instance() -> None:
    child = derive(PARENT, use_case_name="translate")
    assert child.use_case_name == "translate"
    assert child.use_case_id not in (None, "uc-1") and len(child.use_case_id) == 32
    assert child.use_case_version is None and child.use_case_step is None
    assert dict(child.use_case_properties) == {}  # the parent's use-case properties belong to its use case
    assert child.user_id == "ana"  # who and where still inherit
    assert derive(PARENT, use_case_name="translate", use_case_id="uc-9").use_case_id == "uc-9"


def test_the_same_use_case_name_continues_the_parents_instance() -> None:
    child = derive(PARENT, use_case_name="summarize", use_case_version=3)
    assert (child.use_case_id, child.use_case_version, child.use_case_step) == ("uc-1", 3, "draft")


def test_an_empty_use_case_name_drops_the_use_case() -> None:
    child = derive(PARENT, use_case_name="")
    assert (child.use_case_name, child.use_case_id, child.use_case_version, child.use_case_step) == (None,) * 4
    assert dict(child.use_case_properties) == {}
    assert child.limit_ids == ("team-q4",) and child.user_id == "ana"


def test_use_case_details_without_a_name_are_refused() -> None:
    for options in ({"use_case_id": "x"}, {"use_case_version": 1}, {"use_case_step": "s"}):
        with pytest.raises(ContextError, match="--use-case NAME"):
            derive(Context(), **options)


def test_limit_ids_append_without_duplicates_and_an_empty_list_clears() -> None:
    assert derive(PARENT, limit_ids=["ana-daily", "team-q4", "ana-daily"]).limit_ids == ("team-q4", "ana-daily")
    assert derive(PARENT, limit_ids="ana-daily").limit_ids == ("team-q4", "ana-daily")  # one id as a string
    with pytest.raises(ContextError, match="one id per --limit"):
        derive(PARENT, limit_ids="ana-daily,team-q4")
    assert derive(PARENT, limit_ids=[]).limit_ids == ()
    assert derive(PARENT, limit_ids=None).limit_ids == ("team-q4",)


def test_properties_merge_key_by_key_and_an_empty_mapping_clears() -> None:
    child = derive(PARENT, properties={"run": 8, "stage": None})
    assert dict(child.properties) == {"team": "search", "run": "8", "stage": ""}
    assert dict(PARENT.properties) == {"team": "search", "run": "7"}  # the parent is untouched
    assert dict(derive(PARENT, properties={}).properties) == {}
    merged = derive(PARENT, use_case_properties={"ticket": "T-2", "pr": 5}).use_case_properties
    assert dict(merged) == {"ticket": "T-2", "pr": "5"}


def test_merged_properties_are_read_only() -> None:
    child = derive(PARENT, properties={"x": "1"})
    with pytest.raises(TypeError):
        child.properties["y"] = "2"  # type: ignore[index]


def test_none_for_proxy_and_logging_means_inherit_the_setting() -> None:
    assert derive(PARENT, proxy=None).proxy is True
    assert derive(Context(), proxy=None).proxy is None
    assert derive(PARENT, log_prompt_and_response=None).log_prompt_and_response is False
