"""Chat templates (Jinja2) judged by their syntax tree, never rendered.

A model's chat template (GGUF ``tokenizer.chat_template*``, ``chat_template`` in
``tokenizer_config.json`` / ``chat_template.json``) is a Jinja2 program that inference servers
render with the user's messages. Rendered by a plain ``jinja2.Environment`` (llama-cpp-python
before 0.2.72, CVE-2024-34359, and any home-made server), it runs with Python's attribute
access, so a template can climb from any object to ``__globals__`` and ``os.popen``. Searching
the text for ``__class__`` is not enough: names are built at run time (``'%c%c'|format(95,95)``,
``'__in' ~ 'it__'``) and reached through ``attr`` or a subscript.

So the template is parsed with Jinja2's own parser (the same grammar the renderer compiles) and
the tree is compared with what real chat templates do: loop over messages, test roles, read
keys with literal names, trim/tojson, ``namespace(...)`` flags, ``raise_exception``, a few string
methods. Anything that reaches *for* names (``attr``, subscripts or ``.get`` with keys computed
from the template's own strings, ``format`` with ``%c``, dunder or private names, attributes of
the helper globals), calls anything but the known helpers, macros of the template and plain
string/dict/list methods, or loads other templates (``import``/``include``/``extends``) is a
problem with its line and code. A template that does not parse, or is too large to judge, is a
problem too (fail closed): a loader would either refuse it or see something the scan did not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from gapsync.model import Finding, Severity
from gapsync.scanner.base import Where, finding

# Real chat templates are a few KB (the largest tool-calling ones ~40 KB). Jinja2 parses about
# 170 KB/s, so one template costs at most ~0.8 s and all the templates of one file ~1.5 s.
MAX_TEMPLATE = 128 << 10
MAX_TEMPLATES_PER_FILE = 256 << 10
MAX_PROBLEMS = 20

# Globals a chat template may call: the runtimes' helpers (transformers, llama.cpp's minja,
# vLLM, Ollama's converters) and Jinja2's own constructors. Anything else is not called.
CALLABLE_GLOBALS = frozenset({"raise_exception", "strftime_now", "range", "namespace", "dict"})
# Global objects whose attributes lead to Python internals (``namespace.__init__.__globals__``,
# ``lipsum.__globals__``, ``self._TemplateReference__context``): used only as a direct call.
HELPER_GLOBALS = CALLABLE_GLOBALS | {"lipsum", "cycler", "joiner", "self", "config", "request",
                                      "url_for", "get_flashed_messages", "session"}
NEVER_NAMES = frozenset({"self", "config", "request", "url_for", "get_flashed_messages", "session"})
# Methods real templates call on strings, dicts, lists and ``loop``.
SAFE_METHODS = frozenset({
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "lower",
    "upper", "title", "capitalize", "replace", "join", "items", "keys", "values", "get", "append",
    "extend", "count", "find", "rfind", "index", "isdigit", "isalpha", "isalnum", "isspace",
    "isupper", "islower", "isnumeric", "pop", "copy", "cycle", "changed", "strftime",
})
KEY_METHODS = frozenset({"get", "pop"})  # their first argument is a key, like a subscript
# Filters whose result is the same data (or a part of it): a name bound from them is not "built".
SELECTING_FILTERS = frozenset({"items", "dictsort", "list", "first", "last", "selectattr", "rejectattr",
                               "select", "reject", "sort", "unique", "default", "d", "length", "count",
                               "int", "abs", "batch", "slice", "groupby", "map"})
INT_FILTERS = frozenset({"length", "count", "int", "abs", "round", "wordcount"})
SELECTING_METHODS = frozenset({"items", "keys", "values", "get", "copy"})
FILTER_NAME_FILTERS = frozenset({"map", "select", "reject"})  # first argument names a filter or test
ATTRIBUTE_FILTERS = frozenset({"selectattr", "rejectattr", "groupby"})  # first argument names an attribute
LOADS_TEMPLATES = ("Import", "FromImport", "Include", "Extends")
# Attributes of functions, frames and generators that lead to code objects and globals without
# double underscores (Python 2 names included, as jinja2.sandbox lists them).
UNSAFE_ATTRS = frozenset({
    "func_globals", "func_code", "func_closure", "func_defaults", "func_dict", "im_func", "im_self",
    "im_class", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
    "ag_code", "ag_await", "tb_frame", "tb_next", "f_globals", "f_locals", "f_builtins", "f_back",
    "f_code", "co_code", "mro",
})
# str.format / format_map read attributes and items named inside the format string ("{0.__class__}").
FORMAT_METHODS = frozenset({"format", "format_map"})
DUNDER = re.compile(r"__\w+__|__(?:class|mro|base|bases|subclasses|globals|builtins|import|init|dict|code|getattribute)")


@dataclass(frozen=True)
class TemplateProblem:
    """One reason a template is unsafe to render: what, where (line) and the code there."""

    reason: str
    line: int | None
    code: str

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "line": self.line, "code": self.code}


def judge_template(source: str) -> list[TemplateProblem]:
    """Parse ``source`` with Jinja2's parser (never render it) and list what real templates do not do."""
    if len(source) > MAX_TEMPLATE:
        return [TemplateProblem(f"template of {len(source)} characters is too large to judge "
                                f"(limit {MAX_TEMPLATE})", None, source[:80])]
    try:
        tree = _environment().parse(source)
    except RecursionError:
        return [TemplateProblem("template nests too deeply to parse", None, source[:80])]
    except Exception as e:  # noqa: BLE001 - TemplateSyntaxError, and anything the parser raises on hostile text
        line = getattr(e, "lineno", None)
        return [TemplateProblem(f"not a template Jinja2 can parse ({type(e).__name__}: {_one_line(e)}): "
                                "a loader would refuse it or read it differently", line, _line(source, line))]
    try:
        return _Judge(source, tree).run()
    except RecursionError:
        return [TemplateProblem("template nests too deeply to judge", None, source[:80])]
    except Exception as e:  # noqa: BLE001 - a tree this module does not understand is not passed
        return [TemplateProblem(f"template cannot be judged ({type(e).__name__}: {_one_line(e)})", None, source[:80])]


class TemplateBudget:
    """Characters of template judged in one file: many large templates must not add up to minutes."""

    def __init__(self, limit: int = MAX_TEMPLATES_PER_FILE) -> None:
        self.left = limit

    def take(self, n: int) -> bool:
        self.left -= n
        return self.left >= 0


def template_findings(where: Where, key: str, value: Any, offset: int | None, rule: str,
                      budget: TemplateBudget | None = None) -> list[Finding]:
    """The finding for one template: ``rule`` (info, for review) when clean, ``rule.suspicious`` (high)."""
    budget = budget or TemplateBudget()
    if isinstance(value, list):  # tokenizer_config.json: [{"name": ..., "template": ...}, ...]
        out = []
        for i, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            text = item.get("template") if isinstance(item, dict) else item
            out += template_findings(where, f"{key}[{name if isinstance(name, str) else i}]", text, offset, rule,
                                     budget)
        return out
    if isinstance(value, str) and not budget.take(len(value)):
        return [finding(where, f"{rule}.suspicious", Severity.HIGH,
                        f"{key}: the file's templates exceed {MAX_TEMPLATES_PER_FILE} characters in all: "
                        "not judged (fail closed)", offset, key=key)]
    if not isinstance(value, str):
        return [finding(where, f"{rule}.suspicious", Severity.HIGH,
                        f"{key} is not a template string ({type(value).__name__}): cannot be judged",
                        offset, key=key)]
    problems = judge_template(value)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        at = f" line {first.line}" if first.line else ""
        return [finding(where, f"{rule}.suspicious", Severity.HIGH,
                        f"{key}{at}: {first.reason}{more}: unsafe to render outside a sandbox (template injection)",
                        offset, key=key, problems=[p.to_dict() for p in problems[:MAX_PROBLEMS]],
                        count=len(problems))]
    return [finding(where, rule, Severity.INFO,
                    f"{key} is a Jinja2 template ({len(value)} chars) using only what chat templates use; "
                    "runtimes render it", offset, key=key)]


def scan_jinja(f: BinaryIO, where: Where) -> list[Finding]:
    """A chat template in a file of its own (transformers' ``chat_template.jinja`` and
    ``additional_chat_templates/<name>.jinja``, loaded by name): rules ``template.chat_template*``.

    A ``.jinja`` file has no magic number: gapsync/scanner/models.py calls this by the name.
    """
    raw = f.read(MAX_TEMPLATE * 4 + 1)  # UTF-8: up to 4 bytes a character
    if len(raw) > MAX_TEMPLATE * 4:
        return [finding(where, "template.chat_template.suspicious", Severity.HIGH,
                        f"{where.name}: a template file over {MAX_TEMPLATE * 4} bytes is too large to judge "
                        "(fail closed)", None, key=where.name)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return [finding(where, "template.chat_template.suspicious", Severity.HIGH,
                        f"{where.name}: not UTF-8 text ({e.reason} at byte {e.start}); a loader would refuse "
                        "it or read it differently", e.start, key=where.name)]
    return template_findings(where, where.name, text, None, "template.chat_template")


def _environment():
    """The parser transformers uses (loop controls, ``{% generation %}``), imported on first use."""
    global _ENV
    if _ENV is None:
        import jinja2.ext
        from jinja2 import nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class GenerationTag(jinja2.ext.Extension):
            """transformers' ``{% generation %}...{% endgeneration %}`` (marks assistant tokens)."""

            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return nodes.Scope(body, lineno=lineno)

        _ENV = ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols, GenerationTag])
    return _ENV


_ENV = None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:160]


def _line(source: str, line: int | None) -> str:
    if not line:
        return source[:120]
    lines = source.splitlines()
    return lines[line - 1].strip()[:160] if 0 < line <= len(lines) else ""


class _Judge:
    """One pass to find what names are bound to built strings, one pass to judge every node."""

    def __init__(self, source: str, tree) -> None:
        from jinja2 import nodes

        self.nodes = nodes
        self.source = source
        self.tree = tree
        self.problems: list[TemplateProblem] = []
        self._seen: set[tuple[str, int | None]] = set()
        all_nodes = list(_walk(tree))
        self.all_nodes = all_nodes
        self.macros = {n.name: n for n in all_nodes if isinstance(n, nodes.Macro)}
        self.built_names: set[str] = set()
        self.built_attrs: set[str] = set()  # namespace attributes bound to built strings
        self._taint(all_nodes)

    # -- which names hold strings the template built -------------------------------------------
    def _bindings(self, all_nodes) -> Iterator[tuple[Any, Any]]:
        """(target, value) for every binding: set, for, with, macro defaults and call sites."""
        n = self.nodes
        for node in all_nodes:
            if isinstance(node, n.Assign):
                yield node.target, node.node
            elif isinstance(node, n.For):
                yield node.target, node.iter
            elif isinstance(node, n.With):
                yield from zip(node.targets, node.values, strict=False)
            elif isinstance(node, n.AssignBlock):
                yield node.target, n.Concat([])  # captured output: text the template wrote, so built
            elif isinstance(node, n.Macro):
                defaults = node.defaults
                yield from zip(node.args[len(node.args) - len(defaults):], defaults, strict=False)
            elif isinstance(node, n.Call) and isinstance(node.node, n.Name):
                if node.node.name in self.macros:
                    params = self.macros[node.node.name].args
                    yield from zip(params, node.args, strict=False)
                    by_name = {p.name: p for p in params}
                    for kw in node.kwargs:
                        if kw.key in by_name:
                            yield by_name[kw.key], kw.value
                elif node.node.name == "namespace":
                    for kw in node.kwargs:
                        yield n.NSRef("", kw.key), kw.value

    def _taint(self, all_nodes) -> None:
        """Names (and namespace attributes) bound to a built string, through any chain of bindings.

        A worklist, not a loop to a fixed point: a binding is looked at again only when a name
        it reads becomes built, so a template of 20,000 chained ``set``s costs linear time.
        """
        n = self.nodes
        bindings = list(self._bindings(all_nodes))
        readers: dict[tuple[str, str], list[int]] = {}
        for i, (_target, value) in enumerate(bindings):
            if value is None:
                continue
            for sub in _walk(value):
                if isinstance(sub, n.Name):
                    readers.setdefault(("name", sub.name), []).append(i)
                elif isinstance(sub, n.Getattr):
                    readers.setdefault(("attr", sub.attr), []).append(i)
        work = list(range(len(bindings)))
        while work:
            target, value = bindings[work.pop()]
            done = all(name in self.built_names for name in self._target_names(target)) and not (
                isinstance(target, n.NSRef) and target.attr not in self.built_attrs)
            if done or self._plain(value):  # already built: nothing new to learn from it
                continue
            marked = [("name", name) for name in self._target_names(target) if name not in self.built_names]
            self.built_names.update(name for _, name in marked)
            if isinstance(target, n.NSRef) and target.attr not in self.built_attrs:
                self.built_attrs.add(target.attr)
                marked.append(("attr", target.attr))
            for key in marked:
                work.extend(readers.pop(key, ()))

    def _target_names(self, target) -> Iterator[str]:
        n = self.nodes
        if isinstance(target, n.Name):
            yield target.name
        elif isinstance(target, n.Tuple | n.List):
            for item in target.items:
                yield from self._target_names(item)

    def _plain(self, expr) -> bool:
        """Data or template literals used as they are: not a string the template computed."""
        n = self.nodes
        if expr is None or isinstance(expr, n.Const):
            return True
        if isinstance(expr, n.Name):
            return expr.name not in self.built_names
        if isinstance(expr, n.Getattr):  # ns.k where some ns.k was set to a built string
            return expr.attr not in self.built_attrs and self._plain(expr.node)
        if isinstance(expr, n.Getitem):
            if isinstance(expr.arg, n.Slice):  # '_x_xcxlxaxsxsx_x_'[::2] is '__class__'
                return False
            if isinstance(expr.arg, n.Const) and expr.arg.value in self.built_attrs:
                return False
            return self._plain(expr.node) and self._plain(expr.arg)
        if isinstance(expr, n.List | n.Tuple):
            return all(self._plain(i) for i in expr.items)
        if isinstance(expr, n.Dict):
            return all(self._plain(p.key) and self._plain(p.value) for p in expr.items)
        if isinstance(expr, n.CondExpr):
            return self._plain(expr.expr1) and self._plain(expr.expr2)
        if isinstance(expr, n.Filter):  # |default('__cl' ~ 'ass__') returns its argument
            if expr.name == "map" and (expr.args or any(k.key != "attribute" for k in expr.kwargs)):
                return False  # map('replace', 'X', '_') transforms every item
            return (expr.name in SELECTING_FILTERS and self._plain(expr.node) and self._args_plain(expr))
        if isinstance(expr, n.Call) and isinstance(expr.node, n.Getattr):
            return (expr.node.attr in SELECTING_METHODS and self._plain(expr.node.node) and self._args_plain(expr))
        if isinstance(expr, n.Call) and isinstance(expr.node, n.Name):
            return expr.node.name in {"range", "namespace", "dict"}
        return self._int(expr)

    def _args_plain(self, expr) -> bool:
        return (all(self._plain(a) for a in expr.args) and all(self._plain(k.value) for k in expr.kwargs)
                and expr.dyn_args is None and expr.dyn_kwargs is None)

    def _int(self, expr) -> bool:
        """Certainly a number (or an error): index arithmetic such as ``messages[loop.index0 - 1]``."""
        n = self.nodes
        if isinstance(expr, n.Const):
            return isinstance(expr.value, int | float) and not isinstance(expr.value, bool)
        if isinstance(expr, n.Neg | n.Pos):
            return self._int(expr.node)
        if isinstance(expr, n.Getattr) and isinstance(expr.node, n.Name) and expr.node.name == "loop":
            return expr.attr in {"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"}
        if isinstance(expr, n.Filter):
            return expr.name in INT_FILTERS
        if isinstance(expr, n.Add | n.Sub):  # str + int raises: one certain number is enough
            return (self._int(expr.left) and self._ref(expr.right)) or (self._int(expr.right) and self._ref(expr.left))
        if isinstance(expr, n.Mul | n.Div | n.FloorDiv | n.Mod | n.Pow):  # '_' * 2 and '%c' % 95 build strings
            return self._int(expr.left) and self._int(expr.right)
        return False

    def _ref(self, expr) -> bool:
        n = self.nodes
        return self._int(expr) or (isinstance(expr, n.Name | n.Getattr | n.Getitem) and self._plain(expr))

    # -- judging --------------------------------------------------------------------------------
    def problem(self, node, reason: str) -> None:
        line = getattr(node, "lineno", None)
        if (reason, line) in self._seen:
            return
        self._seen.add((reason, line))
        self.problems.append(TemplateProblem(reason, line, _line(self.source, line)))

    def run(self) -> list[TemplateProblem]:
        n = self.nodes
        call_targets = {id(c.node) for c in self.all_nodes if isinstance(c, n.Call)}
        # "{% if strftime_now is defined %}": asking whether a helper exists is not using it
        call_targets |= {id(t.node) for t in self.all_nodes
                         if isinstance(t, n.Test) and t.name in ("defined", "undefined", "none", "callable")}
        for node in self.all_nodes:
            kind = type(node).__name__
            if kind in LOADS_TEMPLATES:
                self.problem(node, f"{{% {kind.lower()} %}} loads another template (a file the model does not carry)")
            elif isinstance(node, n.CallBlock):
                self.problem(node, "{% call %} block: calls a macro with a caller, not used by chat templates")
            elif isinstance(node, n.Name):
                self._name(node, id(node) in call_targets)
            elif isinstance(node, n.Const):
                if isinstance(node.value, str) and DUNDER.search(node.value):
                    self.problem(node, f"string {node.value[:40]!r} names a Python internal")
            elif isinstance(node, n.Getattr):
                if not (node.attr in FORMAT_METHODS and _plain_format_string(node.node)):
                    self._attribute(node, node.attr)
                if isinstance(node.node, n.Name) and node.node.name in HELPER_GLOBALS:
                    self.problem(node, f"attribute {node.attr!r} of the helper {node.node.name!r}: "
                                       "the way to its Python globals")
            elif isinstance(node, n.NSRef):
                self._attribute(node, node.attr)
            elif isinstance(node, n.Getitem):
                self._key(node, node.arg, "subscript")
            elif isinstance(node, n.Call):
                self._call(node)
            elif isinstance(node, n.Filter):
                self._filter(node)
            elif isinstance(node, n.Macro | n.Keyword):
                name = node.name if isinstance(node, n.Macro) else node.key
                if DUNDER.search(name) or name.startswith("_"):
                    self.problem(node, f"name {name!r} is a Python internal or private name")
        return self.problems

    def _name(self, node, called: bool) -> None:
        name = node.name
        if DUNDER.search(name):
            self.problem(node, f"name {name!r} is a Python internal")
        elif name in NEVER_NAMES:
            self.problem(node, f"{name!r} reaches the template engine's own objects")
        elif name in HELPER_GLOBALS and not (called and name in CALLABLE_GLOBALS):
            self.problem(node, f"the helper {name!r} is used as an object, not called: "
                               "its attributes lead to Python globals")

    def _attribute(self, node, attr: str) -> None:
        if DUNDER.search(attr) or attr.startswith("_"):
            self.problem(node, f"attribute {attr!r} is a Python internal or private name")
        elif attr in UNSAFE_ATTRS:
            self.problem(node, f"attribute {attr!r} leads to code, frames or modules")
        elif attr in FORMAT_METHODS:
            self.problem(node, f"str.{attr} reads attributes named inside its format string")

    def _key(self, node, key, what: str) -> None:
        n = self.nodes
        if isinstance(key, n.Slice):
            for part in (key.start, key.stop, key.step):
                if part is not None and not (self._int(part) or self._plain(part)):
                    self.problem(node, f"{what} slice bound computed at run time")
            return
        if isinstance(key, n.Const):
            if isinstance(key.value, str) and (key.value.startswith("_") or key.value in UNSAFE_ATTRS):
                self.problem(node, f"{what} key {key.value!r} is a private name (a subscript falls back to the attribute)")
            return
        if self._int(key) or self._plain(key):
            return
        self.problem(node, f"{what} key built at run time ({_expr(key)}): a name assembled from strings "
                           "reaches attributes the text does not show")

    def _call(self, node) -> None:
        n = self.nodes
        target = node.node
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.problem(node, "call with *args or **kwargs: arguments (and keyword names) built at run time")
        if isinstance(target, n.Name):
            if target.name in CALLABLE_GLOBALS or target.name in self.macros or target.name in ("loop", "caller"):
                return
            self.problem(node, f"calls {target.name!r}, which is not a chat-template helper or a macro of the template")
            return
        if isinstance(target, n.Getattr) and target.attr in FORMAT_METHODS and _plain_format_string(target.node):
            return
        if isinstance(target, n.Getattr) and target.attr in SAFE_METHODS and self._callable_owner(target.node):
            if target.attr in KEY_METHODS and node.args:
                self._key(node, node.args[0], f".{target.attr}()")
            return
        self.problem(node, f"calls {_describe(target)}: chat templates call only helpers, macros and "
                           "string/list/dict methods")

    def _callable_owner(self, expr) -> bool:
        """A method's object: data, a literal, or a value built by a permitted call or filter."""
        n = self.nodes
        if isinstance(expr, n.Name):
            return expr.name not in HELPER_GLOBALS
        return isinstance(expr, n.Const | n.Getattr | n.Getitem | n.Call | n.Filter | n.List | n.Tuple | n.Dict
                          | n.Concat | n.Add | n.CondExpr)

    def _filter(self, node) -> None:
        n = self.nodes
        name = node.name
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            self.problem(node, f"|{name} with *args or **kwargs built at run time")
        if name == "attr":
            self.problem(node, "|attr looks up an attribute by a string, the way around every attribute check")
        elif name == "format":
            fmt = node.node
            if not (isinstance(fmt, n.Const) and isinstance(fmt.value, str)):
                self.problem(node, "|format with a format string computed at run time")
            elif "%c" in fmt.value or re.search(r"%[-#0 +]*\d*(?:\.\d+)?c", fmt.value):
                self.problem(node, f"|format {fmt.value[:30]!r} turns numbers into characters: a name built at run time")
            for arg in node.args:
                if not (self._plain(arg) or isinstance(arg, n.Name)):
                    self.problem(node, f"|format with an argument computed at run time ({_expr(arg)})")
        elif name in FILTER_NAME_FILTERS and node.args:
            first = node.args[0]
            if not (isinstance(first, n.Const) and isinstance(first.value, str)):
                self.problem(node, f"|{name} applies a filter or test named at run time")
            elif name == "map" and first.value in {"attr", "format"}:
                self.problem(node, f"|map('{first.value}', ...) applies |{first.value} to every item")
        if name in ATTRIBUTE_FILTERS and node.args:
            self._attribute_name(node, node.args[0], name)
        for kw in node.kwargs:
            if kw.key == "attribute":
                self._attribute_name(node, kw.value, name)

    def _attribute_name(self, node, arg, filter_name: str) -> None:
        n = self.nodes
        if not (isinstance(arg, n.Const) and isinstance(arg.value, str)):
            self.problem(node, f"|{filter_name} on an attribute named at run time")
            return
        for part in arg.value.split("."):
            if part.startswith("_") or part in UNSAFE_ATTRS:
                self.problem(node, f"|{filter_name} on the private attribute {arg.value!r}")


def _plain_format_string(node) -> bool:
    """A literal format string whose fields are positions or names only ("{}", "{0}", "{role}")."""
    value = getattr(node, "value", None)
    return type(node).__name__ == "Const" and isinstance(value, str) and not re.search(r"\{[^{}]*[.\[!]", value)


def _walk(tree) -> Iterator[Any]:
    """Every node, iteratively (a deep template must not exhaust the Python stack here)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(node.iter_child_nodes())))  # document order


def _describe(node) -> str:
    """What a called expression is, in the template's terms."""
    kind = type(node).__name__
    if kind == "Filter":
        return f"the result of |{node.name}"
    if kind == "Call":
        return "the result of a call"
    if kind == "Getitem":
        return "an item looked up by subscript"
    if kind == "Getattr":
        return f"the method {node.attr!r}" + (" of a helper" if type(node.node).__name__ == "Name"
                                             and node.node.name in HELPER_GLOBALS else "")
    return f"a {kind} expression"


def _expr(node) -> str:
    text = repr(node)
    return text if len(text) <= 100 else text[:97] + "..."
