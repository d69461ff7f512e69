"""Checkpoints, PySpark's names over okplan's cache: ``checkpoint()`` and ``localCheckpoint()`` keep
the dataset's partitions, once the next job has computed them, where ``cache()`` keeps them (the local
executor's memory, the cluster's Redis), and every later plan reads them as a leaf: the lineage below
disappears from ``explain()`` and from planning. Nothing is written to the checkpoint directory, so
``getCheckpointFile()`` is None (see README's differences). Mixed into ``DataSet``.
"""

from __future__ import annotations

from .errors import ConfigurationError


class CheckpointMixin:
    def checkpoint(self) -> None:
        """Mark the dataset to be kept, with its lineage cut, once the next job computes it. Needs
        ``ctx.setCheckpointDir(path)`` first, as PySpark.

        >>> ctx.setCheckpointDir("/tmp/ckpt"); ds.checkpoint(); ds.count(); ds.isCheckpointed()   # doctest: +SKIP
        True
        """
        if self.context.getCheckpointDir() is None:  # type: ignore[attr-defined]
            raise ConfigurationError("Checkpoint directory has not been set in the Context: "
                                     "call ctx.setCheckpointDir(path) first")
        self.context.session.checkpoint(self._node, "reliable")  # type: ignore[attr-defined]

    def localCheckpoint(self) -> None:
        """``checkpoint()`` without a checkpoint directory (PySpark's cheap, executor-local kind).

        >>> ds.localCheckpoint(); ds.isLocallyCheckpointed()            # doctest: +SKIP
        True
        """
        self.context.session.checkpoint(self._node, "local")  # type: ignore[attr-defined]

    def isCheckpointed(self) -> bool:
        """True once a job has computed a dataset marked with ``checkpoint()`` or ``localCheckpoint()``.

        >>> ds.checkpoint(); ds.isCheckpointed(), (ds.count(), ds.isCheckpointed())[1]   # doctest: +SKIP
        (False, True)
        """
        return self.context.session.is_checkpointed(self._node)  # type: ignore[attr-defined]

    def isLocallyCheckpointed(self) -> bool:
        """True when the dataset was marked with ``localCheckpoint()``.

        >>> ds.localCheckpoint(); ds.isLocallyCheckpointed()            # doctest: +SKIP
        True
        """
        return self.context.session.checkpoint_kind(self._node) == "local"  # type: ignore[attr-defined]

    @property
    def is_checkpointed(self) -> bool:
        """True once ``checkpoint()`` was called (PySpark's attribute).

        >>> ds.checkpoint(); ds.is_checkpointed                          # doctest: +SKIP
        True
        """
        return self.context.session.checkpoint_kind(self._node) == "reliable"  # type: ignore[attr-defined]

    def getCheckpointFile(self) -> str | None:
        """Always None: okplan keeps checkpoints where it keeps caches, not in files.

        >>> ds.checkpoint(); ds.count(); ds.getCheckpointFile() is None   # doctest: +SKIP
        True
        """
        return None


__all__ = ["CheckpointMixin"]
