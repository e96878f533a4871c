"""Pickle analysis: a small stack machine that follows what an unpickler would do, without doing it.

Why a stack machine and not a list of GLOBAL opcodes: the names a pickle imports can be hidden
(STACK_GLOBAL fed from the memo, protocol-0 strings, results of calls), the thing that gets
called can be the result of another call (``getattr(os, "system")(...)``), and a payload can be
a second pickle passed as bytes to ``pickle.loads``. Following the stack, the memo and the marks
the way CPython's unpickler does lets the scanner see each of these, while it only ever builds
small stand-in values (:class:`Global`, :class:`Call`, ...), never the objects themselves.

Every global is decided by the allowlist (:mod:`gapsync.policies.pickle_globals`). A malformed
or truncated pickle is a finding at the offset where a real unpickler would stop, and everything
before that offset has been analysed: errors neither crash the scan nor pass the file.

Streams with several pickles in a row (concatenated pickles, the legacy non-zip ``torch.save``
format) are followed pickle after pickle. joblib files are understood too: joblib writes raw
array bytes straight after the BUILD of a ``NumpyArrayWrapper``, which this machine skips exactly
as joblib's loader reads them (object arrays there are nested pickles, which are analysed).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, ClassVar, NoReturn

from gapsync.model import Finding, Severity
from gapsync.policies.pickle_globals import GlobalAction, PicklePolicy, load_pickle_policy, normalize
from gapsync.scanner.base import Where, finding
from gapsync.scanner.formats.pickle_ops import Omitted, PickleError, iter_ops
from gapsync.scanner.formats.streams import ByteReader, Truncated

MAX_ITEMS = 64  # container items kept per list/dict/set; the rest are only counted
MAX_NESTED = 3  # nested pickles (bytes passed to pickle.loads) analysed this deep
HIGHEST_PROTOCOL = 5
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (non-zip) torch.save file
TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys_info, the object, the storage keys; then raw data


@dataclass(eq=False)
class Global:
    """A class or function the pickle imports by name."""

    module: str
    name: str
    offset: int
    allowed: bool = False
    pending: Any = None  # getattr/partial: its finding, reported unless every call of it is judged harmless
    bound: bool = False

    @property
    def ref(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return self.ref


@dataclass(eq=False)
class Call:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, OBJ, INST); ``state`` from BUILD."""

    func: Any
    args: Any
    offset: int
    state: Any = None
    filled: list | None = None  # items SETITEM(S)/APPEND(S) put in it (a dict or list built by a call)

    def __repr__(self) -> str:
        return f"{func_label(self.func)}(...)"


@dataclass(eq=False)
class Persistent:
    """A persistent id (torch uses them for tensor storages); resolved by the loader, not by pickle."""

    pid: Any

    def __repr__(self) -> str:
        return f"persistent_id({_short(self.pid, 60)})"


@dataclass(eq=False)
class Container:
    """A list, dict, set or frozenset; keeps its first MAX_ITEMS items."""

    kind: str
    items: list = field(default_factory=list)
    more: int = 0

    def add(self, item: Any) -> None:
        if len(self.items) < MAX_ITEMS:
            self.items.append(item)
        else:
            self.more += 1

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        raise KeyError(key)

    def keys(self) -> list:
        return [k for k, _ in self.items]

    def __repr__(self) -> str:
        return f"<{self.kind} of {len(self.items) + self.more}>"


class _Opaque:
    def __repr__(self) -> str:
        return "<object>"


OPAQUE = _Opaque()
# Allowed reconstructors that call an argument or setattr() a state: (index of the callee, index of
# its arguments, index of the state), each None if absent. torch's _rebuild_from_type_v2(func,
# new_type, args, state) runs func(*args), then setattr()s state on the result; numpy's
# __generator_ctor(name, ctor) runs ctor(name).
_CALLS_ITS_ARGUMENTS = {
    ("torch._tensor", "_rebuild_from_type_v2"): (0, 2, 3),
    ("torch._utils", "_rebuild_parameter_with_state"): (None, None, 3),
    ("torch._utils", "_set_obj_state"): (None, None, 1),
    ("numpy.random._pickle", "__generator_ctor"): (1, 0, None),
    ("numpy.random._pickle", "__randomstate_ctor"): (1, 0, None),
}
# Denied globals judged where they are called, by what they are called with (Machine._call).
_JUDGED_AT_CALL = frozenset({("builtins", "getattr"), ("functools", "partial"), ("_functools", "partial")})


def func_label(v: Any) -> str:
    if isinstance(v, Global):
        return v.ref
    if isinstance(v, Call):
        return f"{func_label(v.func)}(...)"
    return type(v).__name__ if not isinstance(v, _Opaque | Persistent) else repr(v)


def _short(v: Any, limit: int = 160) -> str:
    try:
        text = repr(v)
    except RecursionError:
        text = "<deep>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass
class _Hit:
    rule: str
    severity: Severity
    message: str
    where: Where
    offset: int | None
    evidence: dict
    count: int = 1


class Findings:
    """Findings of one analysis, deduplicated by (rule, subject): a global used 1,000 times is one line."""

    def __init__(self) -> None:
        self._hits: dict[tuple, _Hit] = {}

    def add(self, where: Where, rule: str, severity: Severity, message: str, offset: int | None,
            subject: str | None = None, **evidence: Any) -> dict:
        key = (where.location, rule, subject if subject is not None else offset)
        hit = self._hits.get(key)
        if hit is None:
            hit = self._hits[key] = _Hit(rule, severity, message, where, offset, dict(evidence))
        else:
            hit.count += 1
        return hit.evidence

    def merge(self, other: Findings) -> None:
        for key, hit in other._hits.items():
            if key in self._hits:
                self._hits[key].count += hit.count
            else:
                self._hits[key] = hit

    def __bool__(self) -> bool:
        return bool(self._hits)

    def to_list(self) -> list[Finding]:
        out = []
        for h in self._hits.values():
            ev = dict(h.evidence)
            if h.count > 1:
                ev["count"] = h.count
            out.append(finding(h.where, h.rule, h.severity, h.message, h.offset, **ev))
        return out


@dataclass
class Outcome:
    """How one pickle ended: at STOP with a value, or at an error."""

    stopped: bool = False
    value: Any = None
    error: PickleError | None = None
    saw_proto: bool = False
    saw_global: bool = False
    saw_call: bool = False
    saw_known_global: bool = False  # a global the policy knows (allowed or denied), not just any two words

    @property
    def looks_like_pickle(self) -> bool:
        """Whether these bytes are a pickle at all (for data that was not labelled one).

        Protocol 0/1 pickles have no magic number, and text can parse as a few opcodes
        ("cat\ndog\n" is GLOBAL at.dog), so unlabelled bytes count as a pickle only with
        stronger evidence: a clean STOP, a PROTO opcode, an import followed by a call, or an
        import of a global the allowlist knows (``builtins.exec`` in a cut-off pickle).
        """
        return (self.stopped or self.saw_proto or (self.saw_global and self.saw_call)
                or self.saw_known_global)


class _Stop(Exception):
    pass


class Machine:
    """Follows one pickle from the reader's position to its STOP (or the error that ends it)."""

    _HANDLERS: ClassVar[dict[str, Any]]  # set per class by _handlers(), not declared here (see there)

    def __init__(self, reader: ByteReader, where: Where, policy: PicklePolicy, findings: Findings,
                 nested_depth: int = 0) -> None:
        self.r, self.where, self.policy, self.f = reader, where, policy, findings
        self.nested_depth = nested_depth
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.out = Outcome()
        self.proto = 0  # set by PROTO; the C unpickler starts every load() at 0
        self.budget = where.budget
        self._pending: list[Global] = []

    # -- driver -----------------------------------------------------------------------------
    @classmethod
    def _handlers(cls) -> dict[str, Any]:
        """Opcode name -> unbound handler, built once per class (not once per pickle)."""
        table = cls.__dict__.get("_HANDLERS")
        if table is None:
            table = {name[3:]: getattr(cls, name) for name in dir(cls) if name.startswith("op_")}
            cls._HANDLERS = table
        return table

    def run(self) -> Outcome:
        handlers = self._handlers()
        budget = self.budget
        ops = iter_ops(self.r)
        start = self.r.pos
        try:
            while True:
                # opcodes in slices of 16,384 (islice counts in C: no Python counter per opcode);
                # after each slice the work, the objects held and the time are charged
                start = self.r.pos
                for op in islice(ops, 0x4000):
                    handler = handlers.get(op.name)
                    if handler is None:
                        self.stack.append(op.arg)
                    else:
                        handler(self, op)
                if budget is not None:
                    budget.pickle(0x4000, len(self.memo) + len(self.stack) + sum(map(len, self.metastack)))
        except _Stop:
            self.out.stopped = True
        except PickleError as e:
            self.out.error = e
        except Truncated as e:
            self.out.error = PickleError("truncated", str(e), e.offset)
        except OSError as e:  # a corrupt compressed stream underneath
            self.out.error = PickleError("malformed", f"the data stops being readable: {e}", self.r.pos)
        if budget is not None:  # the last, partial slice: at most one opcode per byte read, and
            # a pickle costs at least 16 (setting up a machine costs about as much as 16 opcodes)
            budget.ops += max(16, min(self.r.pos - start, 0x4000))
            if budget.ops > budget.max_ops:
                budget.pickle(0, 0)  # raises
        for g in self._pending:  # a getattr that built no allowed bound method is reported as before
            if g.pending is not None and not g.bound:
                g.pending()
        return self.out

    def fail(self, message: str, offset: int, kind: str = "malformed") -> NoReturn:
        raise PickleError(kind, message, offset)

    def push(self, v: Any) -> None:
        self.stack.append(v)

    def pop(self, offset: int) -> Any:
        if not self.stack:
            self.fail("stack underflow", offset)
        return self.stack.pop()

    def top(self, offset: int) -> Any:
        if not self.stack:
            self.fail("stack underflow", offset)
        return self.stack[-1]

    def pop_mark(self, offset: int) -> list[Any]:
        if not self.metastack:
            self.fail("no MARK to pop to", offset)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def add(self, rule: str, severity: Severity, message: str, offset: int | None, subject: str | None = None,
            **evidence: Any) -> dict:
        return self.f.add(self.where, rule, severity, message, offset, subject, **evidence)

    # -- values (literal opcodes without a handler push their argument) ----------------------
    def op_NONE(self, op):
        self.push(None)

    def op_NEWTRUE(self, op):
        self.push(True)

    def op_NEWFALSE(self, op):
        self.push(False)

    def op_EMPTY_LIST(self, op):
        self.push(Container("list"))

    def op_EMPTY_DICT(self, op):
        self.push(Container("dict"))

    def op_EMPTY_SET(self, op):
        self.push(Container("set"))

    def op_EMPTY_TUPLE(self, op):
        self.push(())

    def op_MARK(self, op):
        self.metastack.append(self.stack)
        self.stack = []

    def op_LIST(self, op):
        c = Container("list")
        for x in self.pop_mark(op.offset):
            c.add(x)
        self.push(c)

    def op_TUPLE(self, op):
        self.push(tuple(self.pop_mark(op.offset)))

    def op_TUPLE1(self, op):
        self.push((self.pop(op.offset),))

    def op_TUPLE2(self, op):
        b = self.pop(op.offset)
        self.push((self.pop(op.offset), b))

    def op_TUPLE3(self, op):
        c = self.pop(op.offset)
        b = self.pop(op.offset)
        self.push((self.pop(op.offset), b, c))

    def op_FROZENSET(self, op):
        c = Container("frozenset")
        for x in self.pop_mark(op.offset):
            c.add(x)
        self.push(c)

    def op_DICT(self, op):
        items = self.pop_mark(op.offset)
        if len(items) % 2:
            self.fail("DICT with an odd number of items", op.offset)
        c = Container("dict")
        for i in range(0, len(items), 2):
            c.add((items[i], items[i + 1]))
        self.push(c)

    def op_POP(self, op):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark(op.offset)

    def op_POP_MARK(self, op):
        self.pop_mark(op.offset)

    def op_DUP(self, op):
        self.push(self.top(op.offset))

    def op_NEXT_BUFFER(self, op):
        self.push(OPAQUE)

    def op_READONLY_BUFFER(self, op):
        self.top(op.offset)

    # -- containers being filled (a non-container target means a method call) -----------------
    def _fill(self, op, target: Any, items: list) -> None:
        if isinstance(target, Global):
            self.add("pickle.mutate.global", Severity.HIGH,
                     f"{op.name} on {target.ref} itself: changes a module-level object that other code uses",
                     op.offset, subject=target.ref, target=target.ref)
        if isinstance(target, Container):
            for x in items:
                target.add(x)
        elif isinstance(target, Call):  # OrderedDict() + SETITEMS: kept to judge it as a BUILD state
            if target.filled is None:
                target.filled = []
            target.filled.extend(items[:max(0, MAX_ITEMS - len(target.filled))])

    def op_APPEND(self, op):
        v = self.pop(op.offset)
        self._fill(op, self.top(op.offset), [v])

    def op_APPENDS(self, op):
        items = self.pop_mark(op.offset)
        self._fill(op, self.top(op.offset), items)

    def op_ADDITEMS(self, op):
        items = self.pop_mark(op.offset)
        self._fill(op, self.top(op.offset), items)

    def op_SETITEM(self, op):
        v = self.pop(op.offset)
        k = self.pop(op.offset)
        self._fill(op, self.top(op.offset), [(k, v)])

    def op_SETITEMS(self, op):
        items = self.pop_mark(op.offset)
        if len(items) % 2:
            self.fail("SETITEMS with an odd number of items", op.offset)
        self._fill(op, self.top(op.offset), [(items[i], items[i + 1]) for i in range(0, len(items), 2)])

    # -- memo --------------------------------------------------------------------------------
    def _put(self, key: int, op) -> None:
        value = self.top(op.offset)  # C checks the stack before the index
        if not isinstance(key, int) or key < 0:
            self.fail(f"invalid memo key {key!r}", op.offset)
        self.memo[key] = value

    def op_PUT(self, op):
        self._put(op.arg, op)

    def op_BINPUT(self, op):
        self._put(op.arg, op)

    op_LONG_BINPUT = op_BINPUT

    def op_MEMOIZE(self, op):
        # C: the index is memo_len, the number of occupied slots (not the highest index + 1)
        self._put(len(self.memo), op)

    def _get(self, key: Any, op) -> None:
        if key not in self.memo:
            self.fail(f"memo key {key!r} not found (a real unpickler stops here)", op.offset)
        self.push(self.memo[key])

    def op_GET(self, op):
        self._get(op.arg, op)

    def op_BINGET(self, op):
        self._get(op.arg, op)

    op_LONG_BINGET = op_BINGET

    # -- framing -----------------------------------------------------------------------------
    def op_PROTO(self, op):
        if op.arg > HIGHEST_PROTOCOL:
            self.fail(f"unsupported pickle protocol {op.arg}", op.offset)
        self.out.saw_proto = True
        self.proto = op.arg  # anywhere in the stream: find_class's name mapping depends on it

    def op_FRAME(self, op):
        pass

    def op_STOP(self, op):
        self.out.value = self.pop(op.offset)
        raise _Stop

    def op_PERSID(self, op):
        self.push(Persistent(op.arg))

    def op_BINPERSID(self, op):
        self.push(Persistent(self.pop(op.offset)))

    # -- globals -----------------------------------------------------------------------------
    def _global(self, module: Any, name: Any, op) -> Global:
        if isinstance(module, Omitted) or isinstance(name, Omitted):
            self.add("pickle.global.invalid", Severity.MEDIUM,
                     f"{op.name} with a module or name too long to be importable", op.offset)
            return Global(str(module), str(name), op.offset)
        g = Global(module, name, op.offset)
        if not (all(p.isidentifier() for p in module.split(".")) and all(p.isidentifier() for p in name.split("."))):
            self.add("pickle.global.invalid", Severity.MEDIUM,
                     f"{op.name} names {module!r} {name!r}, which cannot be imported", op.offset,
                     subject=f"{module}:{name}", module=module, name=name)
            return g
        self.out.saw_global = True
        verdict = self.policy.classify(module, name)
        if verdict.action is not GlobalAction.UNKNOWN:
            self.out.saw_known_global = True
        if (verdict.action in (GlobalAction.ALLOW, GlobalAction.REVIEW) and self.proto >= 3
                and normalize(module, name) != (module, name)):
            # C's find_class maps Python 2 names only below protocol 3: here it imports the name
            # as written, which the allowlist (written in Python 3 names) cannot vouch for
            self.add("pickle.global.unknown", Severity.HIGH,
                     f"{module}.{name}: a Python 2 name in a protocol-{self.proto} pickle is imported as written, "
                     "not renamed, so the allowlist cannot vouch for it", op.offset,
                     subject=f"{module}:{name}", module=module, name=name, opcode=op.name)
            return g
        if verdict.action is GlobalAction.ALLOW:
            g.allowed = True
            return g
        rule = {GlobalAction.DENY: "pickle.global.denied", GlobalAction.REVIEW: "pickle.global.review",
                GlobalAction.UNKNOWN: "pickle.global.unknown"}[verdict.action]
        ev = {"global": f"{module}.{name}", "module": module, "name": name, "opcode": op.name}
        if verdict.category:
            ev["category"] = verdict.category

        def report() -> None:
            self.add(rule, verdict.severity or Severity.HIGH, f"{module}.{name}: {verdict.why}", op.offset,
                     subject=f"{module}:{name}", **ev)

        if normalize(module, name) in _JUDGED_AT_CALL:
            g.pending = report  # getattr(obj, name) (a bound method), partial(func, ...): judged in _call
            self._pending.append(g)
        else:
            report()
        return g

    def op_GLOBAL(self, op):
        module, name = op.arg
        self.push(self._global(module, name, op))

    def op_STACK_GLOBAL(self, op):
        name = self.pop(op.offset)
        module = self.pop(op.offset)
        if isinstance(module, str) and isinstance(name, str):
            self.push(self._global(module, name, op))
            return
        literal = (int, float, bytes, bytearray, tuple, type(None), Container, Persistent)
        if isinstance(module, literal) or isinstance(name, literal):
            self.fail(f"STACK_GLOBAL needs two strings, got {_short(module, 40)} and {_short(name, 40)}", op.offset)
        self.add("pickle.global.dynamic", Severity.CRITICAL,
                 f"STACK_GLOBAL imports a name computed at load time ({_short(module, 60)}, {_short(name, 60)}): "
                 "what it imports cannot be known without running the pickle", op.offset,
                 module=_short(module), name=_short(name))
        self.out.saw_global = True
        self.push(Global("<dynamic>", "<dynamic>", op.offset))

    def _ext(self, op):
        if op.arg <= 0:
            self.fail(f"{op.name} code {op.arg} (the unpickler refuses codes <= 0)", op.offset)
        self.add("pickle.global.extension", Severity.HIGH,
                 f"{op.name} {op.arg}: the global comes from the loader's copyreg extension registry, "
                 "which a scan cannot see", op.offset, subject=f"ext:{op.arg}", code=op.arg)
        self.out.saw_global = True
        self.push(Global("<extension>", str(op.arg), op.offset))

    op_EXT1 = op_EXT2 = op_EXT4 = _ext

    # -- calls -------------------------------------------------------------------------------
    def _call(self, func: Any, args: Any, op) -> None:
        self.out.saw_call = True
        if isinstance(func, Persistent) and isinstance(func.pid, tuple) and len(func.pid) == 4 \
                and func.pid[0] == "module" and isinstance(func.pid[1], Global):
            func = func.pid[1]  # legacy torch.save: torch's persistent_load returns the class named there
        if isinstance(func, Global) and func.pending is not None:
            method = self._bound_method(args, op) if func.name == "getattr" else self._partial_of_allowed(func, args, op)
            if method is not None:
                func.bound = True
                self.push(method)
                return
            func.pending()
            func.pending = None
        call = Call(func, args, op.offset)
        if isinstance(func, Global):
            if func.allowed and (func.module, func.name) in _CALLS_ITS_ARGUMENTS and isinstance(args, tuple):
                self._inner_calls(func, args, op)
            if not func.allowed:
                self._note_call_args(func, args)
                if self.policy.is_nested_loader(func.module, func.name):
                    self._nested(func, args, op)
        else:
            self.add("pickle.call.indirect", Severity.HIGH,
                     f"{op.name} calls {func_label(func)}, which is not a global named in the pickle "
                     "(the result of another call or lookup, as in getattr(module, name)(...))",
                     op.offset, subject=func_label(func), callee=func_label(func), opcode=op.name)
        self.push(call)

    def _inner_calls(self, func: Global, args: tuple, op) -> None:
        """An allowed reconstructor that calls one of its arguments or setattr()s a state it is given
        is judged for that call and that state as if the pickle did them itself (REDUCE, BUILD)."""
        callee_at, args_at, state_at = _CALLS_ITS_ARGUMENTS[(func.module, func.name)]
        if callee_at is not None and callee_at < len(args):
            inner = args[args_at] if args_at is not None and args_at < len(args) else ()
            if args_at is not None and args_at == 0 and callee_at != 0:
                inner = (inner,)  # numpy's ctor(name): one argument
            depth = len(self.stack)
            self._call(args[callee_at], inner if isinstance(inner, tuple) else (inner,), op)
            del self.stack[depth:]
        if state_at is not None and state_at < len(args):
            self._build_dunders(args[state_at], op)

    def _bound_method(self, args: Any, op) -> Global | None:
        """getattr(obj, "name") where the allowlist lists that method of obj's class (obj: the class
        itself or an object of it built in this pickle); the bound method stands in as a global."""
        if not (isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], str)):
            return None
        owner = args[0].func if isinstance(args[0], Call) else args[0]
        if isinstance(owner, Global) and owner.allowed and self.policy.allows_method(owner.module, owner.name, args[1]):
            return Global(owner.module, f"{owner.name}.{args[1]}", op.offset, allowed=True)
        return None

    def _partial_of_allowed(self, func: Global, args: Any, op) -> Call | None:
        """functools.partial(f, ...) with f an allowed global: it only stores f and its arguments
        (sklearn keeps partial(check_array, ...)); partial of anything else stays reported."""
        if isinstance(args, tuple) and args and isinstance(args[0], Global) and args[0].allowed:
            return Call(func, args, op.offset)
        return None

    def _note_call_args(self, func: Global, args: Any) -> None:
        for hit_rule in ("pickle.global.denied", "pickle.global.unknown", "pickle.global.review"):
            key = (self.where.location, hit_rule, f"{func.module}:{func.name}")
            hit = self.f._hits.get(key)
            if hit is not None and "args" not in hit.evidence:
                hit.evidence["args"] = _short(args)
                hit.evidence["called"] = True

    def op_REDUCE(self, op):
        args = self.pop(op.offset)
        func = self.pop(op.offset)
        self._call(func, args, op)

    def op_NEWOBJ(self, op):
        args = self.pop(op.offset)
        cls = self.pop(op.offset)
        self._call(cls, args, op)

    def op_NEWOBJ_EX(self, op):
        kwargs = self.pop(op.offset)
        args = self.pop(op.offset)
        cls = self.pop(op.offset)
        self._call(cls, (args, kwargs), op)

    def op_OBJ(self, op):
        items = self.pop_mark(op.offset)
        if not items:
            self.fail("OBJ without a class", op.offset)
        self._call(items[0], tuple(items[1:]), op)

    def op_INST(self, op):
        items = self.pop_mark(op.offset)
        module, name = op.arg
        self._call(self._global(module, name, op), tuple(items), op)

    def op_BUILD(self, op):
        state = self.pop(op.offset)
        target = self.top(op.offset)
        self._build_dunders(state, op)
        if isinstance(target, Global):
            self.add("pickle.build.global", Severity.HIGH,
                     f"BUILD sets attributes on {target.ref} itself (a class, function or module), "
                     "which can replace code that runs later", op.offset, subject=target.ref, target=target.ref)
        elif isinstance(target, Call):
            target.state = state
            if _is_joblib_wrapper(target):
                self._joblib_array(target, state, op)

    def _build_dunders(self, state: Any, op) -> None:
        """BUILD without a ``__setstate__`` copies the state dict into the instance ``__dict__`` and
        setattr()s the slot state: a dunder key there (``__setstate__``, ``__reduce__``,
        ``__class__``, ``__getattr__``...) plants a method that a later BUILD, a copy or any
        code using the object calls. No pickler writes one."""
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        for part in parts:
            if isinstance(part, Container) and part.kind == "dict":
                keys = part.keys()
            elif isinstance(part, Call):
                # a dict built at load time (dict(...), OrderedDict() + SETITEMS): the unpickler takes
                # any dict as the state, so the keys it was given count as much as a literal's
                keys = list(_keys_given(part, 0))
            else:
                continue
            for k in keys:
                if isinstance(k, str):
                    if len(k) > 4 and k.startswith("__") and k.endswith("__"):
                        self.add("pickle.build.dunder", Severity.HIGH,
                                 f"BUILD sets {k!r} on an object: a method or class slot planted by the pickle "
                                 "runs when the object is used", op.offset, subject=k, attribute=k)
                elif not isinstance(k, int | float | bytes | bool | type(None) | tuple):
                    self.add("pickle.build.dunder", Severity.HIGH,
                             f"BUILD sets an attribute whose name is computed at load time ({_short(k, 60)}): "
                             "it can be __setstate__ or another method that runs when the object is used",
                             op.offset, subject="<computed>", attribute=_short(k, 60))

    # -- nested pickles ----------------------------------------------------------------------
    def _nested(self, func: Global, args: Any, op) -> None:
        data = _literal_bytes(args[0]) if isinstance(args, tuple) and args else None
        if data is None:
            if isinstance(args, tuple) and args and isinstance(args[0], Omitted):
                self.add("pickle.nested.unanalysed", Severity.MEDIUM,
                         f"{func.ref} is given {args[0].size} bytes, too many to analyse as a nested pickle",
                         op.offset)
            return
        if self.nested_depth >= MAX_NESTED:
            self.add("pickle.nested.too_deep", Severity.HIGH,
                     f"pickles nested more than {MAX_NESTED} deep; the innermost was not analysed", op.offset)
            return
        inner = self.where.child(f"nested-pickle@{op.offset}", len(data))
        result = analyse_pickles(ByteReader(io.BytesIO(data)), inner, self.policy, known_pickle=True,
                                 nested_depth=self.nested_depth + 1)
        self.f.merge(result.findings)

    # -- joblib ------------------------------------------------------------------------------
    def _joblib_array(self, wrapper: Call, state: Any, op) -> None:
        """Skip (or analyse) the array joblib wrote right after this BUILD, as joblib reads it."""
        info = _joblib_layout(state)
        if info is None:
            self.fail("joblib NumpyArrayWrapper whose dtype or shape cannot be read: "
                      "the end of its array data cannot be found", op.offset)
        count, itemsize, hasobject, aligned = info
        if hasobject:
            m = Machine(self.r, self.where, self.policy, self.f, self.nested_depth)
            out = m.run()
            if out.error is not None:
                raise out.error
        else:
            if aligned:
                pad = self.r.read_byte()
                self.r.skip(pad)
            self.r.skip(count * itemsize)
        self.stack[-1] = OPAQUE


def _keys_given(call: Call, depth: int):
    """The keys a dict built by ``call`` may hold: what SETITEM(S) put in it, and every pair or dict
    key among its arguments (``dict([(k, v)])``, ``dict(**{k: v})``, ``dict(other_dict(...))``)."""
    for item in call.filled or ():
        if isinstance(item, tuple) and len(item) == 2:
            yield item[0]
    for arg in call.args if isinstance(call.args, tuple) else (call.args,):  # the arguments, not as a pair
        yield from _pair_keys(arg, depth)


def _pair_keys(v: Any, depth: int):
    if depth > 4:
        return
    if isinstance(v, tuple):
        if len(v) == 2 and not isinstance(v[0], tuple | Container):
            yield v[0]
        for x in v:
            yield from _pair_keys(x, depth + 1)
    elif isinstance(v, Container):
        for x in v.items:
            if v.kind == "dict":
                yield x[0]
            else:
                yield from _pair_keys(x, depth + 1)
    elif isinstance(v, Call):
        yield from _keys_given(v, depth + 1)


def _literal_bytes(v: Any) -> bytes | None:
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("latin-1", "replace")
    # protocol 2 writes bytes as _codecs.encode(str, "latin1")
    if isinstance(v, Call) and isinstance(v.func, Global) and v.func.ref == "_codecs.encode":
        if isinstance(v.args, tuple) and v.args and isinstance(v.args[0], str):
            return v.args[0].encode("latin-1", "replace")
    return None


def _is_joblib_wrapper(call: Call) -> bool:
    f = call.func
    if isinstance(f, Global) and f.allowed and f.name == "NumpyArrayWrapper":
        return True
    if (isinstance(f, Global) and f.ref == "copyreg._reconstructor" and isinstance(call.args, tuple)
            and call.args and isinstance(call.args[0], Global)):
        g = call.args[0]
        return g.allowed and g.name == "NumpyArrayWrapper"
    return False


def _joblib_layout(state: Any) -> tuple[int, int, bool, bool] | None:
    """(element count, item size, has objects, has alignment padding) from a wrapper's state."""
    if not isinstance(state, Container) or state.kind != "dict":
        return None
    try:
        shape, dtype = state.get("shape"), state.get("dtype")
    except KeyError:
        return None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        return None
    dt = dtype_layout(dtype)
    if dt is None:
        return None
    try:
        aligned = state.get("numpy_array_alignment_bytes") is not None
    except KeyError:
        aligned = False
    return math.prod(shape), dt[0], dt[1], aligned


def dtype_layout(dtype: Any) -> tuple[int, bool] | None:
    """(item size, has objects) of a pickled ``numpy.dtype(...)`` stand-in, or None."""
    if not (isinstance(dtype, Call) and isinstance(dtype.func, Global) and dtype.func.name == "dtype"):
        return None
    args = dtype.args
    if not (isinstance(args, tuple) and args and isinstance(args[0], str)):
        return None
    typestr = args[0].lstrip("<>|=")
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    kind, digits = typestr[:1], typestr[1:]
    hasobject = kind == "O" or bool(flags & 1)
    if elsize > 0:
        return elsize, hasobject
    if not digits.isdigit():
        return None
    size = int(digits) * (4 if kind == "U" else 1)
    return size, hasobject


@dataclass
class PickleScan:
    """The result of analysing a stream that may hold pickles."""

    findings: Findings
    is_pickle: bool
    pickles: int = 0


def analyse_pickles(reader: ByteReader, where: Where, policy: PicklePolicy | None = None, *,
                    known_pickle: bool, nested_depth: int = 0) -> PickleScan:
    """Follow every pickle in the stream, one after another.

    ``known_pickle``: the container says these bytes are a pickle, so an error in the first one
    is a finding. Otherwise the bytes count as a pickle only if they look like one (a PROTO
    header, a clean STOP, or an import followed by a call), and bytes that do not are left alone.
    After the first pickle, further pickles are followed while they look like pickles; the
    legacy torch format stops after its five pickles (the rest is tensor data).
    """
    policy = policy or load_pickle_policy()
    total = Findings()
    count = 0
    legacy_torch = False
    while True:
        first = count == 0
        start = reader.pos
        if not first and reader.at_eof():
            break
        f = Findings()
        out = Machine(reader, where, policy, f, nested_depth).run()
        accepted = (first and known_pickle) or out.looks_like_pickle
        if not accepted:
            if not first:
                total.add(where, "pickle.trailing_data", Severity.INFO,
                          f"data after pickle #{count} at offset {start} is not a pickle; not loaded by pickle.load",
                          start)
            break
        total.merge(f)
        count += 1
        if out.error is not None:
            e = out.error
            rule = {"truncated": "pickle.truncated", "unknown_opcode": "pickle.opcode.unknown"}.get(e.kind,
                                                                                                 "pickle.malformed")
            # fail closed: these bytes start like a pickle, and the scanner follows the C unpickler,
            # so either the unpickler stops here too or the scanner misreads it; both are blocked
            total.add(where, rule, Severity.HIGH,
                      f"pickle #{count}: {e}; it cannot be read the way the unpickler reads it: nothing after "
                      f"offset {e.offset} was analysed", e.offset)
            break
        if first and out.value == TORCH_LEGACY_MAGIC and type(out.value) is int:
            legacy_torch = True
        if legacy_torch and count >= TORCH_LEGACY_PICKLES:
            break
    return PickleScan(total, count > 0, count)
