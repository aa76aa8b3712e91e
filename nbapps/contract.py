"""The parameter contract of an app: which parameters it takes, of which type, with which values.

The contract is read from the notebook's ``parameters`` cell (papermill's convention): one
``name = literal  # help`` line per parameter. The type is the default value's type, or the
annotation when there is one (``rate: float = 1`` and papermill's ``# type: float`` comment), so a
reader of the cell and papermill agree on names, defaults and help text. The cell is read with
:mod:`ast` and :mod:`tokenize` rather than papermill's line regex, which skips any line holding two
``=`` (``sep = "a=b"``) and logs to stderr; a test checks both readers agree on ordinary cells.

Allowed values may be narrowed in ``metadata.nbapps.parameters.NAME`` with ``choices``, ``min``
and ``max``. Values given to an app (test parameters, ``-p name=value``, URL queries) are checked
with :meth:`ParameterContract.problems` / :meth:`~ParameterContract.check`, and text values are
converted with :meth:`~ParameterContract.coerce`.
"""
from __future__ import annotations

import ast
import io
import json
import math
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError

#: The parameter types, named like the Python types of their defaults ("none": default is None).
TYPES = ("int", "float", "bool", "str", "list", "dict", "none")
#: Keys allowed in ``metadata.nbapps.parameters.NAME``.
CONSTRAINT_KEYS = ("choices", "min", "max")

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}
_TYPE_COMMENT = re.compile(r"^type:\s*(?P<type>[^\s]+)\s*(?P<help>.*)$")


def type_name(value: Any) -> str | None:
    """The contract type of a Python value, or ``None`` when no contract type fits it."""
    if value is None:
        return "none"
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str),
                       ("list", list), ("dict", dict)):
        if isinstance(value, kind):
            return name
    return None


def _describe(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fits_type(kind: str, value: Any) -> bool:
    actual = type_name(value)
    if kind == "none":
        return True
    if kind == "float":
        return actual in ("int", "float")
    return actual == kind


def _same_value(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers (``True == 1`` in Python)."""
    ta, tb = type_name(a), type_name(b)
    numbers = {"int", "float"}
    if ta != tb and not (ta in numbers and tb in numbers):
        return False
    return bool(a == b)


@dataclass(frozen=True)
class Parameter:
    """One parameter of an app, with its type, default, help text and allowed values."""

    name: str
    type: str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None

    def problem(self, value: Any) -> tuple[str, str] | None:
        """``(code, message)`` when ``value`` is not acceptable for this parameter, else None.

        A parameter whose default is ``None`` accepts a value of any type; its choices and
        min/max still apply to values other than ``None``.
        """
        if value is None and self.default is None:
            return None
        if self.default is not None and not _fits_type(self.type, value):
            return ("NBA102", f"parameter '{self.name}' expects {self.type}, got "
                              f"{_describe(value)} ({type_name(value) or type(value).__name__})")
        if self.choices is not None and not any(_same_value(value, c) for c in self.choices):
            allowed = ", ".join(_describe(c, 30) for c in self.choices)
            return ("NBA103", f"parameter '{self.name}' is {_describe(value)}; allowed: {allowed}")
        if (self.min is not None or self.max is not None) and type_name(value) in ("int", "float"):
            if self.min is not None and value < self.min:
                return ("NBA103", f"parameter '{self.name}' is {value!r}; minimum is {self.min!r}")
            if self.max is not None and value > self.max:
                return ("NBA103", f"parameter '{self.name}' is {value!r}; maximum is {self.max!r}")
        return None

    def parse_text(self, raw: str | list[str]) -> Any:
        """Convert text (a CLI ``-p`` value or URL query value) to this parameter's type.

        Raises ValueError with a short reason. A list parameter takes a JSON/Python list
        (``["a", "b"]``) or plain items (a repeated query key, or one bare value), typed like the
        default's items; other types take exactly one value.
        """
        items = [str(r) for r in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
        if self.type == "list" and (len(items) != 1 or not items[0].lstrip().startswith("[")):
            return [self._element(item) for item in items]
        if len(items) != 1:
            raise ValueError(f"expects one {self.type} value, got {len(items)} values")
        text = items[0]
        if self.default is not None or self.type == "none":
            return self._typed(text, self.type)
        # typed but defaulting to None ("limit: int = None"): open like its default
        if text.strip().lower() in ("none", "null"):
            return None
        try:
            return self._typed(text, self.type)
        except ValueError:
            return _parse_literal(text, fallback=text)

    def _typed(self, text: str, kind: str) -> Any:
        if kind == "str":
            return text
        if kind == "int":
            try:
                return int(text.strip())
            except ValueError:
                raise ValueError(f"expects an integer, got {_describe(text)}") from None
        if kind == "float":
            try:
                number = float(text.strip())
            except ValueError:
                raise ValueError(f"expects a number, got {_describe(text)}") from None
            if not math.isfinite(number):
                raise ValueError(f"expects a finite number, got {_describe(text)}")
            return number
        if kind == "bool":
            word = text.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"expects true or false, got {_describe(text)}")
        if kind in ("list", "dict"):
            value = _parse_literal(text)
            if type_name(value) != kind:
                example = '["a", "b"]' if kind == "list" else '{"key": "value"}'
                raise ValueError(f"expects a {kind} written as JSON (e.g. {example}), "
                                 f"got {_describe(text)}")
            return value
        # "none": the default is None, so the type is open; read literals, else keep the text
        return _parse_literal(text, fallback=text)

    def _element(self, text: str) -> Any:
        """One item of a list given as repeated values, typed like the default's items."""
        kinds = {type_name(v) for v in self.default or []}
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind in ("int", "float", "bool"):
                return self._typed(text, kind)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "help": self.help,
            "choices": list(self.choices) if self.choices is not None else None,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Parameter:
        choices = data.get("choices")
        return cls(
            name=str(data["name"]),
            type=str(data.get("type") or type_name(data.get("default")) or "none"),
            default=data.get("default"),
            help=str(data.get("help") or ""),
            choices=tuple(choices) if choices is not None else None,
            min=data.get("min"),
            max=data.get("max"),
        )


def query_texts(arguments: Mapping[str, list[bytes]]) -> dict[str, str | list[str]]:
    """The raw parameter texts of a URL query (tornado's ``query_arguments``): one text per
    name, a list for a repeated name; what :meth:`ParameterContract.coerce` takes."""
    raw: dict[str, str | list[str]] = {}
    for key, values in arguments.items():
        texts = [v.decode("utf-8", "replace") for v in values]
        raw[key] = texts[0] if len(texts) == 1 else texts
    return raw


def _parse_literal(text: str, fallback: Any = ValueError) -> Any:
    """JSON first (what web forms and YAML users write), then a Python literal."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if fallback is ValueError:
            raise ValueError(f"cannot read {_describe(text)} as JSON or a Python literal") from None
        return fallback


@dataclass(frozen=True)
class ParameterContract:
    """The parameters of an app, in the order of the ``parameters`` cell."""

    parameters: tuple[Parameter, ...] = ()
    _by_name: dict[str, Parameter] = field(default_factory=dict, init=False, repr=False,
                                           compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parameters})

    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def get(self, name: str) -> Parameter | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self.parameters)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def _unknown(self, name: str) -> str:
        allowed = ", ".join(self.names()) or "none: this app takes no parameters"
        return f"unknown parameter '{name}' (parameters: {allowed})"

    def problems(self, values: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every problem with ``values`` (typed Python values) as ``(code, message)`` pairs.

        Codes: NBA101 unknown name, NBA102 wrong type, NBA103 outside choices or min/max.
        """
        return [(code, message) for _name, code, message in self._problems(values)]

    def _problems(self, values: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for name, value in values.items():
            param = self.get(str(name))
            if param is None:
                out.append((str(name), "NBA101", self._unknown(str(name))))
                continue
            problem = param.problem(value)
            if problem is not None:
                out.append((param.name, *problem))
        return out

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` if all are acceptable (ints given for float parameters become floats).

        Raises :class:`~nbapps.errors.ParameterError` listing every problem.
        """
        _raise_for(self._problems(values))
        return self._normalised(values)

    def coerce(self, raw: Mapping[str, str | list[str]]) -> dict[str, Any]:
        """Typed values from text values (CLI ``-p name=value``, URL query), then :meth:`check`."""
        problems: list[tuple[str, str, str]] = []
        values: dict[str, Any] = {}
        for name, text in raw.items():
            param = self.get(str(name))
            if param is None:
                problems.append((str(name), "NBA101", self._unknown(str(name))))
                continue
            try:
                values[param.name] = param.parse_text(text)
            except ValueError as exc:
                problems.append((param.name, "NBA102", f"parameter '{param.name}' {exc}"))
        problems.extend(self._problems(values))
        _raise_for(problems)
        return self._normalised(values)

    def _normalised(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(values)
        for name, value in out.items():
            param = self.get(name)
            if param and param.type == "float" and type_name(value) == "int":
                out[name] = float(value)
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.parameters]

    @classmethod
    def from_dict(cls, data: list[Mapping[str, Any]] | Mapping[str, Any]) -> ParameterContract:
        """From :meth:`to_dict`'s list (or a mapping with a ``parameters`` list)."""
        items = data.get("parameters", []) if isinstance(data, Mapping) else data
        return cls(tuple(Parameter.from_dict(d) for d in items))


def _raise_for(problems: list[tuple[str, str, str]]) -> None:
    if not problems:
        return
    details = [{"name": n, "code": c, "message": m} for n, c, m in problems]
    if len(problems) == 1:
        message = problems[0][2]
    else:
        message = f"{len(problems)} parameter problems: " + "; ".join(m for _, _, m in problems)
    raise ParameterError(message, code=problems[0][1], details=details)


# -- reading the parameters cell ----------------------------------------------------------------


@dataclass(frozen=True)
class CellProblem:
    """Why (part of) a parameters cell cannot be used: a 1-based ``line`` and a message."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _annotation_type(annotation: str) -> str | None:
    base = annotation.strip().strip("'\"").split("[", 1)[0].split(".")[-1].strip().lower()
    return base if base in TYPES else None


def _trailing_comments(source: str) -> dict[int, str]:
    """Comment text by 1-based line for lines that end with a comment."""
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def _json_like(value: Any) -> str | None:
    """None if ``value`` (nested) holds only contract types with string dict keys, else why."""
    kind = type_name(value)
    if kind is None:
        return f"a {type(value).__name__} is not allowed (use a list, dict, str, number or bool)"
    if kind == "list":
        for item in value:
            why = _json_like(item)
            if why:
                return why
    if kind == "dict":
        for key, item in value.items():
            if not isinstance(key, str):
                return f"dict keys must be strings (found {key!r})"
            why = _json_like(item)
            if why:
                return why
    return None


def read_parameters_cell(source: str) -> tuple[list[Parameter], list[CellProblem]]:
    """The parameters defined by a ``parameters`` cell's source and the problems found.

    Every top-level statement must be ``name = literal`` or ``name: type = literal``; the
    trailing comment of the statement's last line is its help (``# type: float  help`` sets the
    type like papermill). Problems name the line; lines with problems define no parameter.
    """
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = exc.lineno or 1
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        if text.startswith(("%", "!")):
            why = f"`{text[:60]}` is a magic or shell command; move it to another cell"
        else:
            why = f"not valid Python ({exc.msg})"
        return [], [CellProblem(line, why)]
    comments = _trailing_comments(source)
    params: list[Parameter] = []
    problems: list[CellProblem] = []
    seen: set[str] = set()
    for stmt in tree.body:
        snippet = (ast.get_source_segment(source, stmt) or "").splitlines()[0][:60]
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                problems.append(CellProblem(stmt.lineno, f"`{snippet}`: assign one name per line "
                                            "(no unpacking, chained or attribute assignment)"))
                continue
            name, value_node, annotation = stmt.targets[0].id, stmt.value, None
        elif isinstance(stmt, ast.AnnAssign):
            if not isinstance(stmt.target, ast.Name) or stmt.value is None:
                problems.append(CellProblem(stmt.lineno, f"`{snippet}`: an annotated parameter "
                                            "needs a simple name and a default value"))
                continue
            name, value_node = stmt.target.id, stmt.value
            annotation = ast.unparse(stmt.annotation)
        else:
            problems.append(CellProblem(stmt.lineno, f"`{snippet}` is not an assignment; move it "
                                        "to the next cell"))
            continue
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            expr = (ast.get_source_segment(source, value_node) or "").splitlines()[0][:40]
            problems.append(CellProblem(stmt.lineno, f"the value of `{name}` (`{expr}`) is not a "
                                        "literal; compute it in the next cell"))
            continue
        why = _json_like(value)
        if why:
            problems.append(CellProblem(stmt.lineno, f"`{name}`: {why}"))
            continue
        if name in seen:
            problems.append(CellProblem(stmt.lineno, f"`{name}` is assigned twice"))
            continue
        seen.add(name)
        help_text = comments.get(stmt.end_lineno or stmt.lineno, "")
        match = _TYPE_COMMENT.match(help_text)
        if match:
            annotation = annotation or match["type"]
            help_text = match["help"].strip()
        kind = type_name(value) or "none"
        if annotation is not None:
            declared = _annotation_type(annotation)
            if declared is not None and declared != kind:
                if kind == "none" or (declared == "float" and kind == "int"):
                    kind = declared
                else:
                    problems.append(CellProblem(stmt.lineno, f"`{name}` is declared `{annotation}`"
                                                f" but its value is a {kind}"))
                    continue
        params.append(Parameter(name=name, type=kind, default=value, help=help_text))
    return params, problems


def apply_constraints(
    params: list[Parameter], constraints: Mapping[str, Any]
) -> tuple[list[Parameter], list[str]]:
    """Narrow ``params`` with ``metadata.nbapps.parameters`` and say what is wrong in it.

    A parameter whose constraints have a problem keeps none of them (the problems are reported
    as NBA024 by the caller).
    """
    by_name = {p.name: p for p in params}
    problems: list[str] = []
    narrowed: dict[str, Parameter] = {}
    prefix = "metadata.nbapps.parameters"
    for name, spec in constraints.items():
        where = f"{prefix}.{name}"
        param = by_name.get(name)
        if param is None:
            known = ", ".join(by_name) or "none"
            problems.append(f"{where}: `{name}` is not a parameter (parameters: {known})")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: must be a mapping with `choices`, `min` or `max`")
            continue
        own: list[str] = []
        extra = sorted(set(spec) - set(CONSTRAINT_KEYS))
        if extra:
            own.append(f"{where}: unknown key(s) {', '.join(extra)} (allowed: "
                       f"{', '.join(CONSTRAINT_KEYS)})")
        choices = spec.get("choices")
        if "choices" in spec:
            if not isinstance(choices, list) or not choices:
                own.append(f"{where}.choices: must be a non-empty list")
                choices = None
            else:
                bad = [c for c in choices if param.default is not None
                       and not _fits_type(param.type, c)]
                if bad:
                    own.append(f"{where}.choices: {_describe(bad[0])} is not a {param.type}")
        bounds: dict[str, float] = {}
        for key in ("min", "max"):
            if key not in spec:
                continue
            bound = spec[key]
            if param.type not in ("int", "float"):
                own.append(f"{where}.{key}: only numeric parameters take {key} "
                           f"(`{name}` is a {param.type})")
            elif type_name(bound) not in ("int", "float") or not math.isfinite(bound):
                own.append(f"{where}.{key}: must be a number, got {_describe(bound)}")
            else:
                bounds[key] = bound
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            own.append(f"{where}: min {bounds['min']!r} is above max {bounds['max']!r}")
        if not own:
            candidate = Parameter(param.name, param.type, param.default, param.help,
                                  tuple(choices) if choices is not None else None,
                                  bounds.get("min"), bounds.get("max"))
            if param.default is not None and candidate.problem(param.default) is not None:
                own.append(f"{where}: the default {_describe(param.default)} is not allowed by "
                           "these constraints")
            else:
                narrowed[name] = candidate
        problems.extend(own)
    return [narrowed.get(p.name, p) for p in params], problems
