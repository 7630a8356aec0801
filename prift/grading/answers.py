"""Answer extraction and normalisation (the Qwen2.5-Math harness's behaviour, original code).

:func:`extract_answer` takes Minerva's ``final answer is $...$`` form, else the last ``\\boxed{}`` / ``\\fbox{}`` /
``\\framebox{}``, else ``the answer is ...``, else the last number, and normalises it with
:func:`normalize_answer` (presentation-only LaTeX, units, thousands separators, ``x = ...`` prefixes removed).
"""

from __future__ import annotations

import bisect
import re

from prift.grading.brackets import _group_or_token, _match_brace


# =============================================================================
# Extraction
# =============================================================================

_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)(?![a-zA-Z])")
_SPACES_RE = re.compile(r"[ \t]*")
_BARE_ARG_RE = re.compile(r"[^\s$]+")
_OPTION_GROUPS = 2  # \framebox[width][pos]{..}: LaTeX's two optional arguments


def _last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{..}`` / ``\\fbox{..}`` / ``\\framebox{..}`` (by where the command starts),
    or None.

    Also handles the brace-less ``\\boxed 5`` form and ``\\framebox[w][p]{..}``; an unbalanced box takes the rest
    of the text.  Linear in ``len(text)``: the commands are found in one regex pass and tried from the last one; a
    command followed by ``{`` always yields, so only one brace match (a scan to its closing brace) is ever done, and
    every other command costs a constant number of steps (the closing ``]`` of an option group is found by bisection).
    """
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    n = len(text)
    closers: list[int] | None = None
    for m in reversed(boxes):
        i = m.end()
        for _ in range(_OPTION_GROUPS):
            if i >= n or text[i] != "[":
                break
            if closers is None:
                closers = [k.start() for k in re.finditer(r"\]", text)]
            k = bisect.bisect_left(closers, i)
            if k == len(closers):
                break
            i = closers[k] + 1
        i = _SPACES_RE.match(text, i).end()
        if i < n and text[i] == "{":
            j = _match_brace(text, i)
            return text[i + 1 :] if j < 0 else text[i + 1 : j]  # unbalanced: take the rest
        if m.group(0) == "\\boxed" and i > m.end():
            # "\boxed 5": up to whitespace or a math delimiter
            bare = _BARE_ARG_RE.match(text, i)
            if bare:
                return bare.group(0)
    return None


def _math_span(tail: str) -> str | None:
    """Leading math span of ``tail`` (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``)."""
    t = tail.lstrip()
    for open_d, close_d in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if t.startswith(open_d):
            j = t.find(close_d, len(open_d))
            if j < 0:
                return None
            return t[len(open_d) : j]
    return None


def _minerva_answer(text: str) -> str | None:
    """Minerva's ``Final Answer: The final answer is $X$. I hope it is correct.``"""
    idx = text.lower().rfind("final answer is")
    if idx < 0:
        return None
    tail = text[idx + len("final answer is") :]
    tail = tail.lstrip(" :\t")
    box = _last_boxed(tail)
    if box is not None:
        return box
    span = _math_span(tail)
    if span is not None and span.strip():
        return span
    return None


def _answer_is(text: str) -> str | None:
    """The ``... the answer is X`` form (last occurrence)."""
    idx = text.lower().rfind("answer is")
    if idx < 0:
        return None
    tail = text[idx + len("answer is") :].lstrip(" :\t")
    span = _math_span(tail)
    if span is not None:
        return span if span.strip() else None
    line = tail.split("\n", 1)[0].strip()
    # cut at the end of the sentence ("." followed by a space or the end)
    m = re.search(r"\.(\s|$)", line)
    if m:
        line = line[: m.start()]
    return line or None


_NUM_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def _last_number(text: str) -> str | None:
    nums = _NUM_RE.findall(text)
    if not nums:
        return None
    return nums[-1].replace(",", "")


def extract_answer(response: str, benchmark: str | None = None) -> str:
    """Extract and normalise the final answer of a model response.

    Order (as in the Qwen2.5-Math harness): Minerva's ``final answer is $X$``
    form (always tried first; for ``minerva_math`` it is the prompt's format),
    the last boxed expression, ``the answer is X``, and finally the last
    number of the text.  Returns ``""`` when nothing can be found.
    """
    if response is None:
        return ""
    text = str(response)
    ans = _minerva_answer(text)
    if ans is None:
        ans = _last_boxed(text)
    if ans is None:
        ans = _answer_is(text)
    if ans is None:
        ans = _last_number(text)
    if ans is None:
        return ""
    return normalize_answer(ans)


# =============================================================================
# Normalisation
# =============================================================================

_UNIT_WORDS = (
    "square units|square feet|square inches|square meters|square centimeters|square cm|"
    "sq units|sq ft|sq in|cubic units|cubic feet|cubic inches|cubic meters|cubic centimeters|"
    "units?|degrees?|radians?|dollars?|cents?|percent|inches|inch|feet|foot|ft|yards?|miles?|"
    "meters?|metres?|centimeters?|cm|millimeters?|mm|kilometers?|km|kg|grams?|g|pounds?|lbs?|"
    "ounces?|oz|seconds?|sec|s|minutes?|min|hours?|hrs?|days?|weeks?|months?|years?|mph|"
    "liters?|litres?|ml|gallons?|cups?|points?|people|students?|ways?|times|coins?|games?|"
    "cookies?|marbles?|pages?|books?|hours|eggs?|boxes|apples?|handshakes?|outfits?|"
    "numbers?|integers?|digits?|terms?|rows?|seats?|chairs?|tiles?|steps?|sides?|edges?|"
    "vertices|faces?|triangles?|squares?|balls?|cards?|men|women|boys?|girls?|days"
)
_UNIT_TAIL_RE = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\\frac\{\d+\}\{\d+\})?|\\frac\{\d+\}\{\d+\})"
    r"\s+(?:" + _UNIT_WORDS + r")(?:\^\{?[23]\}?)?\.?$"
)
_TEXT_CMDS = r"text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|mathsf|emph|boldsymbol|bm"
_TRAILING_TEXT_RE = re.compile(
    r"(?P<head>.*\S)\s*(?:\\(?:" + _TEXT_CMDS + r")\s*\{[^{}$]*\}|\{\s*\\(?:" + _TEXT_CMDS
    + r")\s*\{[^{}$]*\}\s*\})(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$",
    re.S,
)


def _fix_command_args(s: str, cmd: str, nargs: int) -> str:
    r"""Brace the arguments of ``\cmd``: ``\frac12`` -> ``\frac{1}{2}``."""
    out: list[str] = []
    i = 0
    pat = "\\" + cmd
    while True:
        j = s.find(pat, i)
        if j < 0:
            out.append(s[i:])
            break
        k = j + len(pat)
        if k < len(s) and s[k].isalpha():  # a longer command (\fracx...)
            out.append(s[i:k])
            i = k
            continue
        out.append(s[i:j])
        out.append(pat)
        if cmd == "sqrt" and s.startswith("[", k):  # \sqrt[n]{x}
            e = s.find("]", k)
            if e > 0:
                out.append(s[k : e + 1])
                k = e + 1
        for _ in range(nargs):
            arg = _group_or_token(s, k)
            if arg is None:
                break
            a, k = arg
            out.append("{" + a + "}")
        i = k
    return "".join(out)


def _unwrap_command(s: str, cmds: str) -> str:
    r"""Replace ``\cmd{X}`` by ``X`` for every command in ``cmds`` (nested ok)."""
    pat = re.compile(r"\\(?:" + cmds + r")\s*\{")
    for _ in range(50):
        m = pat.search(s)
        if not m:
            break
        j = _match_brace(s, m.end() - 1)
        if j < 0:
            s = s[: m.start()] + s[m.end() :]
        else:
            s = s[: m.start()] + s[m.end() : j] + s[j + 1 :]
    return s


def normalize_answer(ans: str) -> str:
    """Normalise an answer string (idempotent).

    Removes presentation-only LaTeX (``$``, ``\\left``/``\\right``, spacing,
    ``\\displaystyle``, degree signs, unit ``\\text{}`` suffixes and unit
    words after numbers, a trailing period), canonicalises ``\\dfrac`` and
    brace-less ``\\frac12`` / ``\\sqrt2``, thousands separators of numbers,
    ``x = ...`` prefixes of single-variable answers and ``\\text{(C)}``-style
    choices.  The percent sign is kept (as ``%``) because it changes the
    meaning of a number.
    """
    return _normalize(ans, strip_assignment=True)


def _normalize(ans: str, strip_assignment: bool = True) -> str:
    if ans is None:
        return ""
    s = str(ans).strip()
    if not s:
        return ""
    s = s.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    s = s.replace("\u2212", "-").replace("\u00d7", "\\times ").replace("\u22c5", "\\cdot ")
    # nested \boxed left inside an extracted answer
    for _ in range(5):
        b = _last_boxed(s)
        if b is None or b == s:
            break
        if re.fullmatch(r"\s*\$?\s*\\(?:boxed|fbox|framebox)\s*\{.*\}\s*\$?\s*\.?\s*", s, re.S):
            s = b
        else:
            break
    # protect LaTeX row separators "\\\\" from the control-space rules below
    s = s.replace("\\\\", "\x00")
    # thousands separators written with LaTeX spacing: 10{,}000 10,\!000 10\,000
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<=\d),\s*\\!\s*(?=\d)", ",", s)
    s = re.sub(r"(?<=\d)\\[,!]\s*(?=\d{3}(?!\d))", ",", s)
    s = s.replace("\\!", "")
    # presentation commands
    s = re.sub(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr|bigg|Bigg)\s*\.", "", s)
    s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|bigg|Bigg|big|Big)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\(?:dfrac|tfrac|cfrac)(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\(?:dbinom|tbinom)(?![a-zA-Z])", r"\\binom", s)
    s = re.sub(r"\\(?:,|;|:|>|quad|qquad|enspace|thinspace)(?![a-zA-Z])", " ", s)
    s = s.replace("\\ ", " ").replace("~", " ")
    s = re.sub(r"\\(?:le|leqslant)(?![a-zA-Z])", r"\\leq", s)
    s = re.sub(r"\\(?:ge|geqslant)(?![a-zA-Z])", r"\\geq", s)
    s = re.sub(r"\\(?:ne)(?![a-zA-Z])", r"\\neq", s)
    # dollars (currency and math delimiters)
    s = s.replace("\\$", "").replace("$", "")
    # degrees
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\{\s*\}\s*\^\s*\{\s*\\circ\s*\}", "", s)
    s = re.sub(r"\\(?:circ|degree)(?![a-zA-Z])", "", s).replace("°", "")
    # percent
    s = s.replace("\\%", "%").replace("\\percent", "%")
    # units given as trailing \text{..}/\mbox{..}/\mathrm{..} after something
    for _ in range(5):
        m = _TRAILING_TEXT_RE.fullmatch(s.strip())
        if not m:
            break
        head = m.group("head")
        if not re.search(r"[\w})\]]", head) or head.rstrip().endswith(("=", ",")):
            break
        s = head
    s = re.sub(r"\\text\s*\{\s*(?:and|or)\s*\}", ",", s)
    s = _unwrap_command(s, _TEXT_CMDS)
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)
    # canonical fraction / root arguments
    s = _fix_command_args(s, "frac", 2)
    s = _fix_command_args(s, "sqrt", 1)
    s = _fix_command_args(s, "binom", 2)
    # infinity spellings
    s = re.sub(r"(?<![a-zA-Z\\])(?:infinity|inf)(?![a-zA-Z])", r"\\infty", s).replace("∞", "\\infty")
    # unit words after a number: "12 inches", "5.4 cents"
    m = _UNIT_TAIL_RE.match(s.strip())
    if m:
        s = m.group("num")
    # whitespace: drop it except between two letters ("\pi r")
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<![a-zA-Z]) | (?![a-zA-Z])", "", s)
    # trailing punctuation
    for _ in range(3):
        s2 = re.sub(r"(?:\.|,|;|\x00)+$", "", s).strip()
        if s2 == s:
            break
        s = s2
    # "x \in [1,2]" -> "[1,2]"
    s = re.sub(r"^[a-zA-Z]\\in", "", s)
    # single-variable assignment prefix: "x=5", "\theta=30", "a_1=2"
    if strip_assignment and s.count("=") == 1 and not re.search(r"[<>]|\\(?:leq|geq|neq)", s):
        lhs, rhs = s.split("=")
        if rhs and re.fullmatch(r"[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\[a-zA-Z]+", lhs):
            s = rhs
    # numbers: thousands separators, leading "+", ".5" -> "0.5"
    if re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?", s):
        s = s.replace(",", "")
    s = re.sub(r"^\+(?=[\d.])", "", s)
    s = re.sub(r"(?<![\d}a-zA-Z])\.(?=\d)", "0.", s)
    # multiple choice written as "(C)"
    m = re.fullmatch(r"\(([A-E])\)", s)
    if m:
        s = m.group(1)
    # a redundant outer pair of braces "{5}"
    while s.startswith("{") and _match_brace(s, 0) == len(s) - 1:
        s = s[1:-1].strip()
    return s.replace("\x00", "\\\\")
