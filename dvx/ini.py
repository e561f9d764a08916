"""DVX's INI files (``.dvx/config``, ``.dvx/config.local``): one reader, one editor.

The grammar (``protocols/format.md`` §1, what ``configparser`` accepted before):

* a blank line, or a line whose first non-blank character is ``#`` or ``;``, is a
  comment;
* ``[NAME]`` starts a section (a ``#``/``;`` comment may follow the ``]``);
* ``KEY = VALUE`` or ``KEY: VALUE`` sets a key of the current section; key and value
  are stripped, the value is everything after the first ``=`` or ``:`` (no inline
  comments); a line indented deeper than its key line continues the value;
* a section or key given twice, a key outside any section, or any other line is an
  error.

Edits (``set``, ``unset``, ``remove_section``) change only the lines they must and keep
every other byte: comments (such as the warning never to change the chunker settings),
blank lines, order, indentation and line endings.
"""

from __future__ import annotations

import re

from dvx.errors import ConfigError

_HEADER = re.compile(r"\s*\[(?P<name>[^\]\r\n]+)\]\s*(?:[#;].*)?")


class _Key:
    __slots__ = ("value", "first", "end")

    def __init__(self, value: str, first: int, end: int) -> None:
        self.value = value
        self.first = first  # index of the key's line
        self.end = end  # index after its last continuation line


class _Section:
    __slots__ = ("header", "end", "keys")

    def __init__(self, header: int, end: int) -> None:
        self.header = header  # index of the ``[NAME]`` line
        self.end = end  # index after its last key line (comments below belong to what follows)
        self.keys: dict[str, _Key] = {}


def _is_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped[0] in "#;"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_key(line: str) -> tuple[str, int] | None:
    """``(key, where its value starts)`` of a ``key = value`` or ``key: value`` line
    (the first ``=`` or ``:`` separates), or None. Linear in the line's length."""
    cuts = [i for i in (line.find("="), line.find(":")) if i >= 0]
    if not cuts:
        return None
    sep = min(cuts)
    key = line[:sep].strip()
    if not key:
        return None
    rest = line[sep + 1:]
    return key, sep + 1 + len(rest) - len(rest.lstrip(" \t"))


class IniFile:
    """The lines of one INI file and the sections and keys they define."""

    def __init__(self, text: str = "", where: str = "config") -> None:
        self.where = where
        self.lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
        self._parse()

    @classmethod
    def read(cls, path: str) -> IniFile:
        """The file at ``path``; an empty one if it does not exist."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return cls("", path)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
        try:
            return cls(raw.decode("utf-8"), path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not valid config: not UTF-8 text (byte {exc.start})",
                              "fix or restore the file") from None

    # -- reading ---------------------------------------------------------------------
    def _error(self, index: int, why: str) -> ConfigError:
        return ConfigError(f"{self.where} is not valid config: line {index + 1}: {why}",
                           "fix or restore the file")

    def _parse(self) -> None:
        self._sections: dict[str, _Section] = {}
        section: _Section | None = None
        key: _Key | None = None
        key_indent = 0
        for i, line in enumerate(self.lines):
            if _is_comment(line):
                key = None  # a blank line or comment ends a value
                continue
            if key is not None and _indent(line) > key_indent:
                key.value += "\n" + line.strip()
                key.end = section.end = i + 1  # type: ignore[union-attr]
                continue
            key = None
            if m := _HEADER.fullmatch(line.rstrip("\r\n")):
                name = m.group("name")
                if name in self._sections:
                    raise self._error(i, f"section [{name}] appears twice")
                section = self._sections[name] = _Section(i, i + 1)
                continue
            split = _split_key(line)
            if split is None:
                raise self._error(i, f"expected '[section]' or 'key = value', got {line.strip()[:60]!r}")
            name, value_at = split
            if section is None:
                raise self._error(i, f"key {name[:40]!r} comes before any [section]")
            if name in section.keys:
                raise self._error(i, f"key {name[:40]!r} appears twice in its section")
            key = section.keys[name] = _Key(line[value_at:].strip(), i, i + 1)
            key_indent = _indent(line)
            section.end = i + 1

    def sections(self) -> list[str]:
        return list(self._sections)

    def has_section(self, section: str) -> bool:
        return section in self._sections

    def items(self, section: str) -> list[tuple[str, str]]:
        sec = self._sections.get(section)
        return [] if sec is None else [(k, v.value) for k, v in sec.keys.items()]

    def get(self, section: str, key: str) -> str | None:
        sec = self._sections.get(section)
        found = None if sec is None else sec.keys.get(key)
        return None if found is None else found.value

    def text(self) -> str:
        return "".join(self.lines)

    # -- editing ---------------------------------------------------------------------
    def _newline(self) -> str:
        return "\r\n" if self.lines and self.lines[0].endswith("\r\n") else "\n"

    def _replace(self, start: int, end: int, new: list[str]) -> None:
        self.lines[start:end] = new
        self._parse()  # files of a few dozen lines: re-reading is simpler than patching

    def set(self, section: str, key: str, value: str) -> None:
        """Give ``key`` in ``section`` the value ``value``, adding either if missing."""
        check_setting(key, value)
        if section not in self._sections:
            self.add_section(section)
        sec = self._sections[section]
        old = sec.keys.get(key)
        if old is not None:
            first = self.lines[old.first]
            split = _split_key(first)
            assert split is not None
            prefix = first[:split[1]]
            if value and not prefix[-1].isspace():
                prefix += " "
            ending = first[len(first.rstrip("\r\n")):] or (self._newline() if old.end < len(self.lines) else "")
            self._replace(old.first, old.end, [prefix + value + ending])
            return
        indent = ""
        if sec.keys:  # as indented as the key it follows: deeper would read as its continuation
            last = self.lines[max(k.first for k in sec.keys.values())]
            indent = last[:_indent(last)]
        self._ensure_final_newline(sec.end)
        self._replace(sec.end, sec.end, [f"{indent}{key} = {value}{self._newline()}"])

    def unset(self, section: str, key: str) -> bool:
        """Remove ``key`` from ``section``; False if it was not there."""
        sec = self._sections.get(section)
        old = None if sec is None else sec.keys.get(key)
        if old is None:
            return False
        self._replace(old.first, old.end, [])
        return True

    def add_section(self, section: str) -> None:
        """Append an empty ``[section]`` at the end, after a blank line."""
        if section in self._sections:
            return
        if not section or any(c in section for c in "[]\r\n"):
            raise ConfigError(f"invalid config section name {section!r}")
        nl = self._newline()
        new = [nl] if self.lines else []  # always one, so remove_section can take it back
        self._ensure_final_newline(len(self.lines))
        self._replace(len(self.lines), len(self.lines), [*new, f"[{section}]{nl}"])

    def remove_section(self, section: str) -> bool:
        """Remove ``[section]`` and its keys (and comments between them); comments
        below its last key stay, as they may describe what follows. False if absent."""
        sec = self._sections.get(section)
        if sec is None:
            return False
        start, end = sec.header, sec.end
        # the blank line that set it apart goes with it, unless one still separates
        # what was above from what follows
        if start > 0 and not self.lines[start - 1].strip() and \
                (end == len(self.lines) or not self.lines[end].strip()):
            start -= 1
        self._replace(start, end, [])
        return True

    def _ensure_final_newline(self, before: int) -> None:
        """Inserting at ``before`` == the end needs the last line to end in a newline."""
        if before == len(self.lines) and self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += self._newline()


def check_setting(key: str, value: str) -> None:
    """Refuse a key or value that would not read back as itself (``ConfigError``)."""
    if not key or key != key.strip() or any(c in key for c in "=:\r\n") or key[0] in "[#;":
        raise ConfigError(f"invalid config key {key!r}",
                          "a key may not be empty, hold '=', ':' or a newline, or start with '[', '#' or ';'")
    if "\n" in value or "\r" in value:
        raise ConfigError(f"the value of {key} may not hold a newline")
    if value != value.strip():
        raise ConfigError(f"the value of {key} may not begin or end with white space")
