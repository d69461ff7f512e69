"""Plan pictures: DOT text rendered to a file by Graphviz (``ds.visualize("plan.svg")``)."""

from __future__ import annotations

import os

from .errors import ConfigurationError

_INSTALL_DOT = "install Graphviz (apt-get install graphviz, brew install graphviz, or https://graphviz.org/download/)"


def render_file(dot: str, filename: str, fmt: str | None = None) -> str:
    """Write ``dot`` rendered as ``fmt`` (default: ``filename``'s extension, else svg) to ``filename``.

    >>> render_file("digraph { a -> b }", "/tmp/ab.svg")      # doctest: +SKIP
    '/tmp/ab.svg'
    """
    try:
        import graphviz  # noqa: PLC0415 - an optional dependency
    except ImportError:
        raise ImportError("visualize() needs the graphviz package: pip install 'okplan[viz]' (and Graphviz's "
                          f"dot program: {_INSTALL_DOT})") from None
    fmt = (fmt or os.path.splitext(filename)[1].lstrip(".") or "svg").lower()
    if fmt not in graphviz.FORMATS:
        raise ConfigurationError(f"visualize() cannot write {fmt!r} files; use one of svg, png, pdf, dot")
    try:
        data = graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise ConfigurationError(f"visualize() needs Graphviz's `dot` program on PATH: {_INSTALL_DOT}") from None
    with open(filename, "wb") as f:
        f.write(data)
    return filename
