"""okplan: a Python map-reduce engine with a PySpark-RDD API, a real query planner, and no JVM.

>>> from okplan import Context
>>> with Context() as ctx:
...     ctx.parallelize(["a b", "b"]).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).collectAsMap()
{'a': 1, 'b': 2}
"""

from .broadcast import Broadcast
from .chainable import ChainableList
from .context import Context
from .dataset import DataSet
from .errors import (BlockIntegrityError, ClusterUnavailableError, ConfigurationError, JobFailedError,
                     NotAPairError, NotHashableKeyError, OkplanError, TaskProcessDiedError)
from .exec.accumulators import Accumulator
from .io.commit import FileAlreadyExistsError
from .io.listing import InputPathError
from .files import SparkFiles
from .logger import Logger
from .logical.partitioners import portable_hash
from .statcounter import StatCounter

__version__ = "0.1.0"

__all__ = [
    "Accumulator", "BlockIntegrityError", "Broadcast", "ChainableList", "ClusterUnavailableError",
    "ConfigurationError", "Context", "DataSet", "FileAlreadyExistsError", "InputPathError", "JobFailedError",
    "Logger", "NotAPairError", "NotHashableKeyError", "OkplanError", "SparkFiles", "StatCounter",
    "TaskProcessDiedError",
    "portable_hash",
]
