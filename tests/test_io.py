"""prift.io: what a reader sees of a file or directory being written is the old one or the new one, never a part."""
from __future__ import annotations

import json

import pytest

from prift import io as IO


def test_a_directory_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    out = tmp_path / "run" / "final"
    with IO.atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "model.safetensors").write_text("v1")
        assert not out.exists()                      # nothing at the target while it is written
    assert (out / "model.safetensors").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with IO.atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "model.safetensors").write_text("v2")
            raise RuntimeError("killed while saving")
    assert (out / "model.safetensors").read_text() == "v1"
    assert sorted(p.name for p in out.parent.iterdir()) == ["final"]   # no temporary left
    with IO.atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in out.iterdir()) == ["other"]           # the new directory, not a merge


def test_files_and_jsonl(tmp_path):
    IO.write_json(tmp_path / "a" / "x.json", {"b": 1})
    assert json.loads((tmp_path / "a" / "x.json").read_text()) == {"b": 1}
    IO.write_jsonl(tmp_path / "y.jsonl", iter([{"k": "é"}, {"k": 2}]))
    assert (tmp_path / "y.jsonl").read_text(encoding="utf-8") == '{"k": "é"}\n{"k": 2}\n'

    def rows():
        yield {"k": 1}
        raise ValueError("bad row")
    with pytest.raises(ValueError):
        IO.write_jsonl(tmp_path / "y.jsonl", rows())
    assert (tmp_path / "y.jsonl").read_text(encoding="utf-8").startswith('{"k": "é"}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "y.jsonl"]
