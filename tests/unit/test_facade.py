"""The package facade: names that are both a ``pn.*`` function and a submodule, the lazy imports
that keep ``%load_ext`` fast, and the settings traits declared once."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import cloudpickle

import payi_notebook as pn


def test_loading_the_extension_module_imports_no_pandas_pricing_or_http_client() -> None:
    code = (
        "import sys, payi_notebook, payi_notebook.magic\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'genai_prices', 'httpx', 'ipywidgets', 'plotly') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_limits_is_one_module_and_its_names_are_the_sessions_limits() -> None:
    import payi_notebook.limits as limits_module

    assert pn.limits is limits_module
    assert isinstance(limits_module.Limits, type) and limits_module.LimitError is pn.LimitError
    bound = pn.limits.create
    assert bound.__self__ is pn.get_session().limits  # the session's limits, whatever imported what first


def test_ledger_and_journal_stay_functions_once_their_modules_are_imported() -> None:
    import payi_notebook.delivery.journal
    import payi_notebook.ledger  # noqa: F401

    assert callable(pn.ledger) and pn.ledger() is pn.get_session().ledger
    assert callable(pn.journal) and pn.journal.__module__ == "payi_notebook"


def test_the_package_pickles_by_name_for_cloudpickle_and_dask() -> None:
    def uses_pn() -> object:
        return pn.flush

    assert pickle.loads(pickle.dumps(pn)) is pn
    assert pickle.loads(cloudpickle.dumps(uses_pn))() is pn.flush


def test_the_magic_shows_the_settings_own_traits() -> None:
    from payi_notebook.config import MAGIC_SETTINGS, Settings
    from payi_notebook.magic import PayiMagics

    ours, theirs = PayiMagics.class_traits(config=True), Settings.class_traits()
    assert set(ours) == set(MAGIC_SETTINGS)
    for name in MAGIC_SETTINGS:
        assert type(ours[name]) is type(theirs[name]) and ours[name].help == theirs[name].help, name
        assert ours[name].default_value == theirs[name].default_value, name
    assert not Settings.class_traits(config=True), "tagging the magic's copies leaves the settings' traits alone"
