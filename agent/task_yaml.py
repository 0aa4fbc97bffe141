"""Reading a task file as untrusted input: bounded, non-blocking, and safe against hostile YAML.

Usage::

    node, data = load_yaml_file(Path("task.yaml"))   # raises YamlProblem(line, field, message)

What is refused, each with the line (and the field, where there is one):

- anything but a regular file (a FIFO or a device would block or never end), and files over ``MAX_BYTES``;
- text that is not UTF-8;
- nesting deeper than ``MAX_DEPTH``, more than ``MAX_ALIASES`` aliases, an alias inside its own anchor
  (a recursive document), and documents that expand to more than ``MAX_NODES`` values (an alias bomb):
  PyYAML shares aliased nodes, so the bomb goes off only when something walks the data;
- duplicate keys (YAML says keys are unique; PyYAML silently keeps the last one, which can drop a
  ``secret: true`` written beside the first);
- NUL characters in any value (paths, commands and URLs cannot hold them).

The pure-Python loader is used on purpose: libyaml's composer recurses in C, so a deep document could
crash the process before any limit is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tools.errors import UsageError

MAX_BYTES = 256 * 1024  # real task files are a few KB; the pure-Python parser reads ~100 KB/s at worst
MAX_DEPTH = 40
MAX_ALIASES = 200
MAX_NODES = 100_000


class YamlProblem(UsageError, ValueError):
    """A task file that cannot be read as safe YAML: ``line`` (1-based, or None) and ``field`` (or "")."""

    def __init__(self, message: str, *, line: int | None = None, field: str = "") -> None:
        self.line, self.field, self.message = line, field, message
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field + ': ' if self.field else ''}{self.message}"


def read_task_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """The file's text, refusing what is not a regular UTF-8 file of at most ``max_bytes`` bytes."""
    try:
        info = os.stat(path)  # follows symlinks: what matters is what would be read
    except FileNotFoundError:
        raise YamlProblem("file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise YamlProblem(f"cannot read the file: {_os_reason(exc)}") from None
    _require_regular(info.st_mode)
    if info.st_size > max_bytes:
        raise YamlProblem(f"the file is {info.st_size:,} bytes; task files may be at most {max_bytes:,} bytes")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the stat, opening must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise YamlProblem(f"cannot read the file: {_os_reason(exc)}") from None
    try:
        _require_regular(os.fstat(fd).st_mode)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:  # st_size can lie (/proc files say 0): read at most one byte past the limit
            chunk = os.read(fd, min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise YamlProblem(f"cannot read the file: {_os_reason(exc)}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise YamlProblem(f"the file is larger than {max_bytes:,} bytes, the limit for task files")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line=line) from None


def _require_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise YamlProblem(f"not a regular file ({kind}); a task file must be a plain file")


def _os_reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with limits on depth and aliases, checked while composing (before anything recurses far)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._nodes = 0
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlProblem(f"more than {MAX_ALIASES} aliases (*name); task files may not use more", line=line)
            if event.anchor in self._open_anchors:
                raise YamlProblem(
                    f"the alias *{event.anchor} refers to a value that contains it (a recursive document)", line=line
                )
            return super().compose_node(parent, index)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YamlProblem(f"more than {MAX_NODES:,} values; task files may not be that large", line=line)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", line=line)
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)


def load_yaml(text: str) -> tuple[Node | None, Any]:
    """Compose ``text`` once (the node tree gives line numbers), check it, then build the data from it."""
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise YamlProblem(f"not valid YAML: {_yaml_reason(exc)}", line=mark.line + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise YamlProblem(f"not valid YAML: {exc}") from None
        if node is None:
            return None, None
        _check_tree(node)
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise YamlProblem(f"not valid YAML: {_yaml_reason(exc)}", line=mark.line + 1 if mark else None) from None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. an integer of 5,000 digits (Python refuses to convert it) or an unhashable key
            raise YamlProblem(f"a value cannot be read: {exc}") from None
    finally:
        loader.dispose()
    return node, data


_TYPED = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}


def inputs_as_written(node: Node | None, data: dict[str, Any]) -> None:
    """Put back, as the text written, each input value that YAML read as a number, a truth value or a date: an
    input is text typed into a page, and YAML turns `zip: 01234` into 668, `price: 39.90` into 39.9 and
    `phone: +4912345` into 4912345. Quoted values and strings are left as they are."""
    inputs = data.get("inputs")
    if not isinstance(node, MappingNode) or not isinstance(inputs, dict):
        return
    inputs_node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "inputs"), None)
    if not isinstance(inputs_node, MappingNode):
        return
    for key_node, value_node in inputs_node.value:
        name = key_node.value if isinstance(key_node, ScalarNode) else None
        if name not in inputs:
            continue
        if isinstance(value_node, ScalarNode) and value_node.tag in _TYPED:
            inputs[name] = value_node.value
        elif isinstance(value_node, MappingNode) and isinstance(inputs[name], dict):
            for field_key, field_value in value_node.value:
                if isinstance(field_key, ScalarNode) and field_key.value == "value":
                    if isinstance(field_value, ScalarNode) and field_value.tag in _TYPED:
                        inputs[name]["value"] = field_value.value


# PyYAML's wording for the mistakes people make most, said in words a task's author knows.
_HINTS = (
    (
        "expected <block end>, but found",
        "the indentation does not line up here (a line indented more or less than the one before it)",
    ),
    (
        "mapping values are not allowed here",
        "a ':' where no key can start: a line indented under a value, or a value holding ': ' without quotes",
    ),
    ("found character '\\t' that cannot start any token", "a tab: indent with spaces"),
)


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    # "while scanning a quoted scalar, found unexpected end of stream": the context says what was being read.
    parts = [p for p in (exc.context, exc.problem) if p]
    said = ", ".join(parts) if parts else str(exc)
    hint = next((hint for pattern, hint in _HINTS if pattern in said), None)
    return f"{hint} ({said})" if hint else said


def load_yaml_file(path: Path, *, max_bytes: int = MAX_BYTES) -> tuple[Node | None, Any]:
    return load_yaml(read_task_text(path, max_bytes=max_bytes))


def _check_tree(root: Node) -> None:
    """Duplicate keys, NUL characters and the expanded size, walking each shared (aliased) node once."""
    sizes: dict[int, int] = {}

    def walk(node: Node, path: tuple[Any, ...]) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, ScalarNode):
            if "\x00" in node.value:
                raise YamlProblem("contains a NUL character", line=_line(node), field=dotted(path))
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                size += walk(child, (*path, i))
                _limit(size, child)
        elif isinstance(node, MappingNode):
            seen: dict[tuple[str, str], Node] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else None
                if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    first = seen.get((key.tag, key.value))
                    if first is not None:
                        raise YamlProblem(
                            f"duplicate key {key.value!r} (first on line {_line(first)}); YAML keys must be unique",
                            line=_line(key),
                            field=dotted((*path, key.value)),
                        )
                    seen[(key.tag, key.value)] = key
                size += walk(key, path) + walk(value, (*path, name) if name is not None else path)
                _limit(size, value)
        sizes[id(node)] = size
        return size

    walk(root, ())


def _limit(size: int, node: Node) -> None:
    if size > MAX_NODES:
        raise YamlProblem(
            f"the document expands to more than {MAX_NODES:,} values (through aliases?); task files may not be that large",
            line=_line(node),
        )


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def dotted(path: tuple[Any, ...] | list[Any], empty: str = "") -> str:
    """``("checks", 0, "url")`` -> ``checks[0].url``, the way problems name a field (``empty`` for the root)."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[") or empty


def line_prefix(node: Node | None, loc: tuple[Any, ...] | list[Any]) -> str:
    """``line N: `` for the deepest YAML node on ``loc`` (the field itself, or its parent when missing)."""
    found = node
    for depth, part in enumerate(loc):
        child = None
        if isinstance(found, MappingNode):
            last = depth == len(loc) - 1
            # The key's line for the field itself (its value may start on the next line).
            child = next(((k if last else v) for k, v in found.value if k.value == part), None)
        elif isinstance(found, SequenceNode) and isinstance(part, int) and part < len(found.value):
            child = found.value[part]
        if child is None:
            break
        found = child
    return f"line {found.start_mark.line + 1}: " if found is not None else ""
