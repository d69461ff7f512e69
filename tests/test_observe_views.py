"""Pictures and live views of a job: DOT that Graphviz tools parse, visualize() with a clear error when
Graphviz is missing, progress lines under a terminal and none in a pipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from operator import add

import pytest

from okplan.errors import ConfigurationError


def _wordcount(ctx):
    lines = ctx.parallelize(["a b a", "c b a", "d"] * 10, 3).setName("lines")
    return lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add, 2).join(
        ctx.parallelize([("a", "x"), ("b", "y")], 2))


def test_dot_parses_with_stages_as_clusters_and_shuffles_as_edges(ctx):
    pydot = pytest.importorskip("pydot")
    ds = _wordcount(ctx)
    dot = ds.explain(format="dot")
    assert isinstance(dot, str) and dot.startswith("digraph okplan {")
    (graph,) = pydot.graph_from_dot_data(dot)
    clusters = [g.get_name() for g in graph.get_subgraphs()]
    assert clusters == ["cluster_0", "cluster_1", "cluster_2"]
    shuffle_edges = [e for e in graph.get_edges() if "shuffle" in (e.get_label() or "")]
    assert len(shuffle_edges) == 2
    assert any("hash(2)" in e.get_label() and "3 -> 2 partitions" in e.get_label() for e in shuffle_edges)
    assert "Map(<lambda>" in dot and "FlatMap(str.split)" in dot and "lines" in dot
    ds.collect()  # after a run the picture carries the figures
    ran = ds.explain(format="dot")
    (graph,) = pydot.graph_from_dot_data(ran)
    assert "30 in" in ran and " records" in ran and ctx.lastJobMetrics().job_id in ran


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_dot_is_accepted_by_graphviz_and_visualize_writes_the_file(local_ctx, tmp_path):
    pytest.importorskip("graphviz")
    ds = _wordcount(local_ctx)
    canon = subprocess.run(["dot", "-Tcanon"], input=ds.explain(format="dot"), capture_output=True, text=True,
                           timeout=60)
    assert canon.returncode == 0 and "cluster_2" in canon.stdout, canon.stderr
    out = ds.visualize(str(tmp_path / "plan.svg"))
    assert out.endswith("plan.svg") and "<svg" in open(out).read()
    png = ds.visualize(str(tmp_path / "plan.png"))
    assert open(png, "rb").read(4) == b"\x89PNG"
    with pytest.raises(ConfigurationError, match="cannot write 'docx'"):
        ds.visualize(str(tmp_path / "plan.docx"))


def test_visualize_names_what_to_install(local_ctx, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "graphviz", None)  # as if the extra were not installed
        with pytest.raises(ImportError, match=r"okplan\[viz\]"):
            local_ctx.parallelize([1]).visualize(str(tmp_path / "p.svg"))
    pytest.importorskip("graphviz", reason="checks the missing dot program's message")
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on PATH
    with pytest.raises(ConfigurationError, match="needs Graphviz's `dot` program"):
        local_ctx.parallelize([1]).visualize(str(tmp_path / "p.svg"))


def test_explain_rejects_an_unknown_format(local_ctx):
    with pytest.raises(ValueError, match="format must be"):
        local_ctx.parallelize([1]).explain(format="png")


_JOB = textwrap.dedent("""
    import time
    from okplan import Context

    def slow(x):
        time.sleep(0.05)
        return (x % 3, x)

    with Context(MASTER) as ctx:
        print(sorted(ctx.range(SLICES * 2, numSlices=SLICES).map(slow).reduceByKey(lambda a, b: a + b, 2).collect()))
""")


def _script(tmp_path, master: str, slices: int = 12) -> str:
    """A job of ``slices`` tasks of 0.1 s each, then 2 small ones."""
    path = tmp_path / "job.py"
    path.write_text(_JOB.replace("MASTER", repr(master)).replace("SLICES", str(slices)))
    return str(path)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OKPLAN_PROGRESS", "LOG_LEVEL")}
    env.update(extra)
    return env


def _run_in_pty(args: list[str], env: dict[str, str]) -> str:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr (as from a user's shell); all it wrote."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(args[0], args, env)
    out = bytearray()
    try:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out.extend(data)
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


@pytest.mark.parametrize("master", ["local", "local-cluster[2]"])
def test_progress_shows_under_a_terminal(tmp_path, master):
    # the cluster reports progress every half second, with 2 workers: give it twice the tasks
    shown = _run_in_pty([sys.executable, _script(tmp_path, master, 12 if master == "local" else 24)], _env())
    assert "[(0, 84), (1, 92), (2, 100)]" in shown or "[(0, 360), (1, 376), (2, 392)]" in shown
    assert "Stage 0" in shown and "task" in shown and "records" in shown, shown


def test_no_progress_in_a_pipe_unless_asked(tmp_path):
    script = _script(tmp_path, "local", 6)
    piped = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120, env=_env())
    assert piped.returncode == 0 and "[(0, 18), (1, 22), (2, 26)]" in piped.stdout
    assert "Stage 0" not in piped.stderr and "Stage 0" not in piped.stdout
    forced = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120,
                            env=_env(OKPLAN_PROGRESS="1"))
    assert "Stage 0" in forced.stderr and "records" in forced.stderr and "[(0, 18)" in forced.stdout


def test_progress_switch(monkeypatch):
    from okplan.exec.progress import job_progress, progress_wanted

    monkeypatch.setenv("OKPLAN_PROGRESS", "0")
    assert not progress_wanted() and job_progress("j") is None
    monkeypatch.setenv("OKPLAN_PROGRESS", "1")
    assert progress_wanted()
    monkeypatch.delenv("OKPLAN_PROGRESS")
    assert not progress_wanted()  # pytest captures stderr: not a terminal
