"""``examples/logs.py`` runs on every executor and gives plain Python's answer."""

from __future__ import annotations

import gzip
import importlib.util
import os
from collections import Counter
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "logs.py"


@pytest.fixture(scope="module")
def logs():
    spec = importlib.util.spec_from_file_location("okplan_example_logs", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_python_counts(logs, folder: str) -> list[tuple[str, int]]:
    counts: Counter = Counter()
    for name in os.listdir(folder):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(os.path.join(folder, name), "rt") as f:
            counts.update(s for s in map(logs.status_of, f.read().splitlines()) if s)
    return sorted(counts.items())


def test_logs_example_on_every_executor(ctx, logs, tmp_path):
    folder, out = str(tmp_path / "logs"), str(tmp_path / "counts")
    logs.make_sample_logs(folder, files=4, lines=300)
    result = logs.count_statuses(ctx, folder, out)
    assert result == plain_python_counts(logs, folder)
    assert "_SUCCESS" in os.listdir(out)
    saved = ctx.textFile(out).map(lambda line: tuple(line.split("\t"))).collect()
    assert [(s, int(n)) for s, n in saved] == result


def test_logs_example_as_a_program(logs, capsys):
    result = logs.main("local")
    assert sum(n for _, n in result) == 6 * 2_000
    assert "status counts of" in capsys.readouterr().out
