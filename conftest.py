"""For every test and doctest: plans are validated after each optimizer rule. For doctests
(``--doctest-modules`` runs them with the test suite): the names every example may use without
importing them, and one in-process Context shared by all of them as ``ctx``."""

from __future__ import annotations

import os
from operator import add

import pytest
from _pytest.doctest import DoctestItem

from okplan import ChainableList, Context

# every rule's result is validated in tests (LogicalPlan.check after each rewrite)
os.environ.setdefault("OKPLAN_CHECK_PLANS", "1")


@pytest.fixture(scope="session")
def doctest_ctx():
    with Context("local[2]") as ctx:
        yield ctx


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace):
    if isinstance(request.node, DoctestItem):
        doctest_namespace.update(ctx=request.getfixturevalue("doctest_ctx"), Context=Context, add=add,
                                 ChainableList=ChainableList)
