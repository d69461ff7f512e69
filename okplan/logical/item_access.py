"""Which item of its record a predicate reads, found from its bytecode.

A filter after a join, ``join(...).filter(lambda kv: kv[0] < 8)``, may move below the join only when
the predicate provably reads nothing but the key: then it gives the same answer on the join's input
pairs ``(k, v)`` as on its output pairs ``(k, (v, w))``. ``item_read`` proves that for the common case
of a plain function whose one argument is only ever used as ``arg[0]`` (or only as ``arg[1]``), and
answers None whenever it cannot be sure (the argument stored, passed on, captured by an inner function,
read through ``locals()``...). None only means "not proven": the filter then stays where it is.

>>> item_read(lambda kv: kv[0] < 8)
0
>>> item_read(lambda kv: kv[1] % 2 == 0 and kv[1] > 3)
1
>>> item_read(lambda kv: kv[0] < kv[1]) is None
True
>>> item_read(lambda kv: len(kv) == 2) is None
True
"""

from __future__ import annotations

import dis
import functools
import inspect
from types import CodeType
from typing import Any

#: opcodes that only push the argument on the stack (3.11: LOAD_FAST; 3.12+ adds the others)
_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"})
#: opcodes that push a small integer constant
_CONSTS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
#: names through which a function can reach its own locals without naming them
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "sys", "inspect"})
_NOT_PLAIN = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR | inspect.CO_COROUTINE \
    | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def item_read(fn: Any) -> int | None:
    """``i`` (0 or 1) when ``fn(record)`` provably reads only ``record[i]``, else None."""
    code = getattr(fn, "__code__", None)
    if not inspect.isfunction(fn) or not isinstance(code, CodeType):
        return None
    required = code.co_argcount - len(fn.__defaults__ or ())
    if code.co_argcount < 1 or required > 1 or code.co_kwonlyargcount:
        return None
    return _item_read(code)


@functools.lru_cache(maxsize=512)
def _item_read(code: CodeType) -> int | None:
    if code.co_flags & _NOT_PLAIN or _INTROSPECTION & set(code.co_names):
        return None
    arg = code.co_varnames[0]
    if arg in code.co_cellvars:  # an inner function or comprehension (3.11) sees the whole record
        return None
    ops = [i for i in dis.get_instructions(code) if i.opname not in ("EXTENDED_ARG", "NOP", "CACHE")]
    items: set[int] = set()
    for pos, ins in enumerate(ops):
        if not _mentions(ins, arg):
            continue
        if ins.opname not in _LOADS or pos + 2 >= len(ops):
            return None
        const, subscript = ops[pos + 1], ops[pos + 2]
        index = const.argval
        if const.opname not in _CONSTS or type(index) is not int or index not in (0, 1):
            return None
        if not (subscript.opname == "BINARY_SUBSCR"
                or subscript.opname == "BINARY_OP" and subscript.argrepr.strip() == "[]"):
            return None
        items.add(index)
    return items.pop() if len(items) == 1 else None


def _mentions(ins: dis.Instruction, arg: str) -> bool:
    """True when the instruction reads, writes or deletes the local variable ``arg``."""
    if "FAST" not in ins.opname and "DEREF" not in ins.opname and "CLOSURE" not in ins.opname:
        return False
    value = ins.argval
    return value == arg or isinstance(value, tuple) and arg in value
