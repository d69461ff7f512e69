"""Error types every layer may raise: the ones users catch (``okplan.NotAPairError``, ...) and the
planner's own. This module imports nothing of okplan."""

from __future__ import annotations


class OkplanError(Exception):
    """Base class of errors okplan raises itself (not errors of user functions)."""


class JobFailedError(OkplanError):
    """A job could not finish for a reason other than an exception in user code
    (e.g. a task failed more often than the retry bound allows)."""


class TaskProcessDiedError(JobFailedError):
    """A task killed the process that ran it (``os._exit``, a signal, a segfault, out of memory) on
    every attempt; the message names the stage, partition, dataset and how the process ended."""


class CacheLostError(JobFailedError):
    """A ``cache()``d dataset a job read is gone (evicted, expired, dropped by another thread). The
    Context catches it and runs the job again from the dataset's lineage; users see it only if the
    recomputed cache is lost again."""

    def __init__(self, message: str, cache_id: str | None = None):
        super().__init__(message)
        self.cache_id = cache_id

    def __reduce__(self):
        return (type(self), (str(self), self.cache_id))


class BlockIntegrityError(OkplanError):
    """A block in Redis failed its MAC check: written without this cluster's secret, or altered. It
    was not unpickled."""


class ClusterUnavailableError(OkplanError):
    """The master or Redis could not be reached."""


class ConfigurationError(OkplanError, ValueError):
    """An argument or setting is invalid."""


class NotAPairError(OkplanError, TypeError):
    """A by-key operation met a record that is not a ``(key, value)`` pair."""


class NotHashableKeyError(OkplanError, TypeError):
    """A by-key operation met a key that cannot be hashed (a list, a dict, ...)."""


class InvalidPlanError(OkplanError, AssertionError):
    """A plan breaks an invariant every plan keeps: a bug in okplan (an optimizer rule), never in
    the user's program. ``LogicalPlan.check()`` raises it."""


class PlannerWarning(UserWarning):
    """The planner did something the user may want to know about (e.g. the optimizer stopped at its
    pass limit before reaching a fixpoint; the plan is still correct)."""
