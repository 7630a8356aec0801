"""Plain data: how values cross the sandbox boundary (inputs going in, a program's outputs coming out).

A program's output leaves the sandbox as JSON text and is rebuilt, outside, from a closed set of trusted types; the
comparison with the expected output then only ever sees those types.  An output that is not plain data (an object
of the program's own class, a generator, a cycle, ...) cannot be encoded and is a failure; an instance of a subclass
of a builtin type crosses as the builtin value.  Either way there is no object of the program's whose ``__eq__`` the
grader would call.

The encoding (JSON; a JSON object is always a one-key tag, so it cannot be confused with data):

=================================  =====================================================================
None, bool, str, float             JSON null / true / false / string / number (``NaN``, ``Infinity`` and
                                   ``-Infinity`` as Python's json writes them; floats round-trip exactly)
int                                JSON number; ``{"int": "<hex>"}`` beyond :data:`DECIMAL_BITS` bits
                                   (linear to write and read, where decimal conversion is quadratic and
                                   capped at 4,300 digits by Python)
list                               JSON array; a list of tuples of scalars ``{"tuples": [[...], ...]}``
tuple, set, frozenset, deque       ``{"tuple": [...]}``, ``{"set": [...]}``, ``{"frozenset": [...]}``,
                                   ``{"deque": [...]}``
dict, Counter, OrderedDict,        ``{"dict": [[key, value], ...]}`` (keys of any plain hashable type),
defaultdict                        ``{"Counter": ...}``, ``{"OrderedDict": ...}``, ``{"defaultdict": ...}``
complex                            ``{"complex": [real, imag]}``
bytes                              ``{"bytes": "<hex>"}``
numpy scalar / array               ``{"numpy": [dtype, value]}`` / ``{"ndarray": [dtype, nested list]}``
                                   (bool, signed / unsigned integer, float and complex dtypes only)
=================================  =====================================================================

The types are matched exactly (``type(x) is int``); the numpy scalar types are recognised by module and dtype; an
instance of a *subclass* of a builtin type crosses as the builtin value, read with the builtin's own methods (a
``namedtuple`` as a tuple, an ``IntEnum`` member as an int): the value crosses, never the class, so no overridden
``__eq__`` can run on the receiving side.  Every other type is refused (:class:`NotPlain`).  Evalplus's expected
outputs of HumanEval+ / MBPP+ use int, float, str, bool, None, list, tuple, dict, set, complex and Counter;
LiveCodeBench's are JSON.

Limits: nesting depth :data:`MAX_DEPTH`; the receiving side also refuses an encoding past its byte cap
(:data:`MAX_BYTES`; longer lists cross in chunks, see :func:`prift.sandbox.run_calls`) and sets / dict keys whose
hashes collide en masse (:func:`hash_spread_ok`), so that no output can make the grader quadratic.

Import-free beyond the standard library (the sandbox's runner uses it as a script-side module); numpy is imported
only to rebuild numpy values on the receiving side.
"""
from __future__ import annotations

import collections
import itertools
import json

MAX_DEPTH = 100
DECIMAL_BITS = 12_000          # ~3,600 decimal digits, under Python's 4,300-digit conversion limit
MAX_BYTES = 64 * 1024 ** 2     # the largest expected output of HumanEval+ / MBPP+ encodes to 12.4 MB
MAX_HASH_RUN = 64              # more keys than this sharing one hash value: refused

_NUMPY_KINDS = "biufc"         # bool, signed, unsigned, float, complex
_SCALARS = (type(None), bool, float, str)
_SCALAR_SET = frozenset(_SCALARS)
_MAPPINGS = {dict: "dict", collections.Counter: "Counter", collections.OrderedDict: "OrderedDict",
             collections.defaultdict: "defaultdict"}
_SEQUENCES = {tuple: "tuple", set: "set", frozenset: "frozenset", collections.deque: "deque"}


class NotPlain(ValueError):
    """A value outside the plain-data types (or past the limits)."""


# ----------------------------------------------------------------------------------------------------------------
# encoding (the sending side; inside the sandbox for outputs)
# ----------------------------------------------------------------------------------------------------------------

def _encode_int(x: int):
    if x.bit_length() <= DECIMAL_BITS:
        return x
    return {"int": format(x, "x")}


def _scalars_only(items: list) -> bool:
    """Whether every item is None / bool / float / str or an int short enough for decimal (JSON writes them as
    they are, at C speed)."""
    return _all_scalars(items, lambda: items)


def _all_scalars(items, again) -> bool:
    """:func:`_scalars_only` of an iterable; ``again()`` iterates over it a second time (for the ints' sizes)."""
    kinds = set(map(type, items))
    if kinds <= _SCALAR_SET:
        return True
    if kinds <= _SCALAR_SET | {int}:
        ints = [v for v in again() if type(v) is int]
        return -(1 << DECIMAL_BITS) < min(ints) and max(ints) < (1 << DECIMAL_BITS)
    return False


def _encode_items(items, depth: int) -> list:
    """A list of encoded items; a list of scalars is kept as it is (the common large output, e.g. 10^6 floats)."""
    if not isinstance(items, list):
        items = list(items)
    if _scalars_only(items):
        return items
    return [encode(v, depth + 1) for v in items]


def _numpy_type(x) -> str | None:
    """The dtype name of a numpy scalar or array of a plain kind, else None (without importing numpy)."""
    t = type(x)
    if t.__module__ != "numpy":
        return None
    dtype = getattr(x, "dtype", None)
    kind, name = getattr(dtype, "kind", None), getattr(dtype, "name", None)
    if not isinstance(kind, str) or kind not in _NUMPY_KINDS or not isinstance(name, str):
        return None
    return name


def encode(x, depth: int = 0):
    """The JSON-ready form of ``x``; raises :class:`NotPlain` for any other type or past :data:`MAX_DEPTH`."""
    if depth > MAX_DEPTH:
        raise NotPlain(f"nested deeper than {MAX_DEPTH}")
    t = type(x)
    if t in _SCALARS:
        return x
    if t is int:
        return _encode_int(x)
    if t is list:
        if x and set(map(type, x)) == {tuple} and _all_scalars(itertools.chain.from_iterable(x),
                                                               lambda: itertools.chain.from_iterable(x)):
            return {"tuples": x}   # e.g. 10^6 tuples of str: JSON writes the tuples as arrays, at C speed
        return _encode_items(x, depth)
    if t in _SEQUENCES:
        return {_SEQUENCES[t]: _encode_items(x, depth)}
    if t in _MAPPINGS:
        return {_MAPPINGS[t]: [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]}
    if t is complex:
        return {"complex": [x.real, x.imag]}
    if t is bytes:
        return {"bytes": x.hex()}
    name = _numpy_type(x)
    if name is not None:
        if t.__name__ == "ndarray":
            return {"ndarray": [name, _encode_items(x.tolist(), depth)]}
        value = x.item()
        if type(value) not in (bool, int, float, complex):
            raise NotPlain(f"numpy scalar of dtype {name}")
        return {"numpy": [name, encode(value, depth + 1)]}
    for base, value_of in _BASE_VALUES:   # a subclass crosses as its builtin value, never as its class
        if isinstance(x, base):
            return encode(value_of(x), depth + 1)
    raise NotPlain(f"{t.__module__}.{t.__qualname__} is not plain data")


# the builtin value of an instance of a subclass, read with the builtin's own methods (not the subclass's)
_BASE_VALUES = ((int, int.__int__), (float, float.__float__), (str, str.__str__), (bytes, bytes.__bytes__),
                (complex, lambda x: complex(float.__float__(complex.real.__get__(x)),
                                            float.__float__(complex.imag.__get__(x)))),
                (list, lambda x: list(list.__iter__(x))), (tuple, lambda x: tuple(tuple.__iter__(x))),
                (dict, lambda x: dict(dict.items(x))), (set, lambda x: set(set.__iter__(x))),
                (frozenset, lambda x: frozenset(frozenset.__iter__(x))))


def dumps(x) -> str:
    """One line of JSON for ``x`` (see the module docstring); raises :class:`NotPlain`."""
    try:
        return json.dumps(encode(x), separators=(",", ":"))
    except RecursionError as e:
        raise NotPlain("nested too deeply") from e
    except (TypeError, ValueError) as e:   # e.g. a str with surrogates json cannot write, an int past the limit
        if isinstance(e, NotPlain):
            raise
        raise NotPlain(str(e)) from e


# ----------------------------------------------------------------------------------------------------------------
# decoding (the receiving side; outside the sandbox for outputs)
# ----------------------------------------------------------------------------------------------------------------

def hash_spread_ok(keys) -> bool:
    """False when more than :data:`MAX_HASH_RUN` of ``keys`` share one hash value (a hash flood would make a set or
    dict of them quadratic to build). Sorting the hashes costs n log n whatever they are."""
    hashes = sorted(map(hash, keys))
    run = 1
    for a, b in zip(hashes, hashes[1:]):
        run = run + 1 if a == b else 1
        if run > MAX_HASH_RUN:
            return False
    return True


def _hashables(items: list) -> list:
    try:
        ok = hash_spread_ok(items)
    except TypeError as e:
        raise NotPlain(f"unhashable set element or key: {e}") from e
    if not ok:
        raise NotPlain("too many colliding hashes")
    return items


def _decode_list(items: list, depth: int) -> list:
    kinds = set(map(type, items))
    if not kinds & {list, dict}:
        return items
    return [decode(v, depth + 1) for v in items]


def _decode_pairs(payload, depth: int) -> tuple[list, list]:
    if type(payload) is not list or any(type(p) is not list or len(p) != 2 for p in payload):
        raise NotPlain("a mapping is a list of [key, value] pairs")
    keys = _hashables([decode(k, depth + 1) for k, _ in payload])
    return keys, [decode(v, depth + 1) for _, v in payload]


def _numpy_dtype(name):
    import numpy as np
    if type(name) is not str:
        raise NotPlain("numpy dtype must be a name")
    try:
        dtype = np.dtype(name)
    except TypeError as e:
        raise NotPlain(f"unknown numpy dtype {name!r}") from e
    if dtype.kind not in _NUMPY_KINDS or dtype.name != name:
        raise NotPlain(f"numpy dtype {name!r} is not a plain kind")
    return np, dtype


def decode(obj, depth: int = 0):
    """The value of an encoded (and JSON-parsed) object, built from trusted types only; raises :class:`NotPlain`."""
    if depth > MAX_DEPTH + 1:
        raise NotPlain(f"nested deeper than {MAX_DEPTH}")
    t = type(obj)
    if t in _SCALARS or t is int:
        return obj
    if t is list:
        return _decode_list(obj, depth)
    if t is not dict or len(obj) != 1:
        raise NotPlain("a JSON object must be a one-key tag")
    (tag, payload), = obj.items()
    if tag == "tuples":
        if type(payload) is not list or set(map(type, payload)) - {list} \
                or set(map(type, itertools.chain.from_iterable(payload))) & {list, dict}:
            raise NotPlain("tuples payload must be a list of lists of scalars")
        return list(map(tuple, payload))
    if tag in ("tuple", "set", "frozenset", "deque"):
        if type(payload) is not list:
            raise NotPlain(f"{tag} payload must be a list")
        items = _decode_list(payload, depth)
        if tag == "tuple":
            return tuple(items)
        if tag == "deque":
            return collections.deque(items)
        return (set if tag == "set" else frozenset)(_hashables(items))
    if tag in ("dict", "Counter", "OrderedDict", "defaultdict"):
        keys, values = _decode_pairs(payload, depth)
        d = dict(zip(keys, values))
        if tag == "dict":
            return d
        if tag == "defaultdict":
            return collections.defaultdict(None, d)
        return (collections.Counter if tag == "Counter" else collections.OrderedDict)(d)
    if tag == "int":
        if type(payload) is not str or not payload or payload.lstrip("-")[:1] in ("", "+", "-"):
            raise NotPlain("int payload must be a hex string")
        try:
            return int(payload, 16)
        except ValueError as e:
            raise NotPlain(str(e)) from e
    if tag == "complex":
        if type(payload) is not list or len(payload) != 2 or any(type(v) not in (int, float) for v in payload):
            raise NotPlain("complex payload must be [real, imag]")
        return complex(*payload)
    if tag == "bytes":
        if type(payload) is not str:
            raise NotPlain("bytes payload must be a hex string")
        try:
            return bytes.fromhex(payload)
        except ValueError as e:
            raise NotPlain(str(e)) from e
    if tag in ("numpy", "ndarray"):
        if type(payload) is not list or len(payload) != 2:
            raise NotPlain(f"{tag} payload must be [dtype, value]")
        np, dtype = _numpy_dtype(payload[0])
        value = decode(payload[1], depth + 1)
        try:
            if tag == "numpy":
                if type(value) not in (bool, int, float, complex):
                    raise NotPlain("numpy scalar value must be a number")
                return dtype.type(value)
            if type(value) is not list:
                raise NotPlain("ndarray value must be a (nested) list")
            return np.array(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as e:
            if isinstance(e, NotPlain):
                raise
            raise NotPlain(f"{tag}: {e}") from e
    raise NotPlain(f"unknown tag {tag!r}")


def loads(text: str | bytes):
    """The value encoded in ``text`` (one JSON document); raises :class:`NotPlain`."""
    if len(text) > MAX_BYTES:
        raise NotPlain(f"encoding longer than {MAX_BYTES} bytes")
    try:
        obj = json.loads(text)
    except RecursionError as e:
        raise NotPlain("nested too deeply") from e
    except ValueError as e:   # bad JSON, or a decimal int past Python's digit limit
        raise NotPlain(f"not JSON: {e}") from e
    try:
        return decode(obj)
    except RecursionError as e:
        raise NotPlain("nested too deeply") from e

