"""The resumable runner's done/todo decision: each reason to redo an item is seen."""

import os

from dpedkit.runner import Item, RunSummary, exit_code, fingerprints, params_hash, plan


def test_each_reason_to_redo_an_item_is_seen(tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("photo")
    out.write_text("result")
    params = params_hash({"threshold": 0.9})
    item = Item("a", job="a", inputs={"photo": src}, identity={"source": "in.txt"})
    rec = {"name": "a", "status": "ok", "params": params, "inputs": fingerprints({"photo": src}), "source": "in.txt"}

    def todo(record, p=params, it=item, force=False):
        return [i.name for i in plan([it], p, lambda _: record, lambda *_: [out], force).todo]

    assert todo(rec) == []                                                  # done
    assert todo(None) == ["a"]                                              # never run
    assert todo(dict(rec, status="failed")) == ["a"]                        # failed last time
    assert todo(rec, p=params_hash({"threshold": 0.8})) == ["a"]            # an option changed
    assert todo(dict(rec, source="other.txt")) == ["a"]                     # another source file
    assert todo(rec, force=True) == ["a"]
    os.utime(src, ns=(0, 0))                                                # the input changed
    assert todo(rec) == ["a"]
    rec["inputs"] = fingerprints({"photo": src})
    assert todo(rec) == []
    out.unlink()                                                            # an output is missing
    assert todo(rec) == ["a"]


def test_summary_and_exit_codes():
    s = RunSummary(noun="photos", statuses=("ok", "failed"))
    for rec in ({"status": "ok"}, {"status": "failed", "reason": "truncated JPEG (x.jpg)"},
                {"status": "failed", "reason": "truncated JPEG (y.jpg)"}):
        s.add(rec)
    assert s.problems == 2 and "  2 × truncated JPEG" in s.lines()
    assert exit_code(s.problems) == 1 and exit_code(s.problems, allow_failures=True) == 0 and exit_code(0) == 0
