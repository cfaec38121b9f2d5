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
    s = RunSummary(noun="photo", statuses=("ok", "failed"))
    for rec in ({"status": "ok"}, {"name": "x", "status": "failed", "reason": "truncated JPEG (x.jpg)"},
                {"name": "y", "status": "failed", "reason": "truncated JPEG (y.jpg)"}):
        s.add(rec)
    assert s.problems == 2 and s.lines()[0].startswith("3 photos: 1 ok, 2 failed")
    assert "  failed x: truncated JPEG (x.jpg)" in s.lines() and "  failed y: truncated JPEG (y.jpg)" in s.lines()
    assert exit_code(s.problems) == 1 and exit_code(s.problems, allow_failures=True) == 0 and exit_code(0) == 0


def test_summary_lists_each_failure_with_its_reason_then_groups_the_rest():
    s = RunSummary(shown=2)
    s.add({"name": "ok1", "status": "ok"})
    for i in range(5):
        s.add({"name": f"p{i}", "status": "failed", "reason": f"phone photo phone/p{i}.jpg: not an image (p{i})"})
    lines = s.lines()
    assert lines[0].startswith("6 pairs: 1 ok, 5 failed, 0 unpaired")
    assert lines[1] == "  failed p0: phone photo phone/p0.jpg: not an image (p0)" and lines[2].startswith("  failed p1")
    assert lines[3].startswith("  … and 3 more") and len(lines) == 4 + 3     # p2..p4 differ in their file names


def test_a_run_that_found_nothing_usable_is_a_problem_with_a_reason():
    s = RunSummary(noun="pair", empty_reason="no photos in raw/phone and raw/dslr")
    assert s.problems == 1 and s.lines()[-1] == "error: nothing to do: no photos in raw/phone and raw/dslr"
    s.add({"name": "notes.xmp", "status": "ignored", "reason": "a sidecar file"})
    assert s.problems == 1 and exit_code(s.problems) == 1          # ignored sidecars are not photos
    s.add({"name": "a", "status": "ok"})
    assert s.problems == 0 and not any(line.startswith("error") for line in s.lines())


def test_count_text_writes_english_plurals():
    from dpedkit.runner import count_text
    assert [count_text(1, "pair"), count_text(2, "pair"), count_text(0, "photo"), count_text(3, "patch")] == \
        ["1 pair", "2 pairs", "0 photos", "3 patches"]
