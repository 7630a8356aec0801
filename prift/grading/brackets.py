"""Brace and bracket helpers shared by answer extraction, normalisation and structured comparison.

Matching LaTeX braces (escaped ``\\{`` / ``\\}`` skipped), reading one LaTeX argument, splitting at bracket
depth 0 and recognising one outer bracketed group (intervals ``[a, b)`` included).
"""

from __future__ import annotations

import re


_BRACE_TOKENS = re.compile(r"\\[{}]|[{}]")


def _match_brace(s: str, i: int, open_ch: str = "{", close_ch: str = "}") -> int:
    """Index of the brace closing the one opened at ``s[i]``, or -1.

    Escaped braces (``\\{``, ``\\}``) are skipped when scanning plain braces (the scan jumps from brace to brace
    with a regex, so it costs little beyond the braces themselves).
    """
    depth = 0
    if open_ch == "{" and close_ch == "}":
        for m in _BRACE_TOKENS.finditer(s, i):
            t = m.group()
            if len(t) == 2:  # \{ or \}
                continue
            depth += 1 if t == "{" else -1
            if depth == 0:
                return m.start()
        return -1
    for j in range(i, len(s)):
        c = s[j]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return j
    return -1


def _group_or_token(s: str, i: int) -> tuple[str, int] | None:
    """Read one LaTeX argument starting at ``s[i]`` (skipping spaces).

    Returns ``(argument_without_braces, index_after)``; a braced group, a
    ``\\command`` or a single character.
    """
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return None
    if s[i] == "{":
        j = _match_brace(s, i)
        if j < 0:
            return None
        return s[i + 1 : j], j + 1
    if s[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[i:])
        if m:
            return m.group(0), i + m.end()
        return s[i : i + 2], i + 2
    if s[i] in "}$":
        return None
    return s[i], i + 1


_OPEN = "([{"
_CLOSE = ")]}"


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split ``s`` on ``sep`` occurring at bracket depth 0."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    i = 0
    n = len(s)
    L = len(sep)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += L
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _outer_brackets(s: str) -> tuple[str, str, str] | None:
    """If ``s`` is one bracketed group, return ``(open, inner, close)``.

    Brackets of any type count (so that half-open intervals ``[a, b)`` are
    recognised); ``\\{ ... \\}`` is reported with open ``"{"``.
    """
    s = s.strip()
    if len(s) < 2:
        return None
    if s.startswith("\\{") and s.endswith("\\}"):
        open_ch, start, close_ch, end = "{", 2, "}", len(s) - 2
    elif s[0] in _OPEN and s[-1] in _CLOSE:
        open_ch, start, close_ch, end = s[0], 1, s[-1], len(s) - 1
    else:
        return None
    # The opening bracket must stay open until the very end.
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        step = 1
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            c = s[i + 1]
            step = 2
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0 and i + step < len(s):
                return None
        i += step
    if depth != 0:
        return None
    return open_ch, s[start:end], close_ch
