"""auto's per-machine choice: candidates from CPU flags and the card's measured accuracy, the cache, the log line.

Timings here come from fake timers (the real measurement takes seconds and is not run by the suite).
"""

import json
import logging

import pytest

from contrique_video.api import builtin_card, builtin_weights
from contrique_video.backends import autotune
from contrique_video.backends import open_backend
from contrique_video.backends import cpu as cpu_mod
from contrique_video.models import get_card
from contrique_video.errors import ModelError, UnsupportedError

IN = {"srcc_change": -0.001, "mean_abs_score_change": 0.2, "max_abs_score_change": 0.9, "measured": "test"}
OUT = {"srcc_change": -0.001, "mean_abs_score_change": 0.7, "max_abs_score_change": 2.0, "measured": "test"}
AVX512_BF16 = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}


def test_accuracy_bounds():
    assert autotune.accuracy_ok(IN)
    assert not autotune.accuracy_ok(OUT)
    assert not autotune.accuracy_ok({**IN, "srcc_change": -0.0051})
    assert not autotune.accuracy_ok({**IN, "srcc_change": 0.0051})
    assert not autotune.accuracy_ok({"srcc_change": 0.0})  # no score change measured
    assert not autotune.accuracy_ok(None)
    assert not autotune.accuracy_ok({**IN, "mean_abs_score_change": "n/a"})


OFFERED = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]


def test_candidates_need_native_instructions_and_measured_accuracy():
    both = {"torch bf16": IN, "onnxruntime int8": IN}
    paths, skipped = autotune.candidates({"avx2", "fma"}, both, OFFERED)
    assert paths == [("torch", "fp32"), ("onnxruntime", "fp32")]
    assert any(s.startswith("bf16: no ") and "avx512_bf16" in s for s in skipped)
    paths, skipped = autotune.candidates(AVX512_BF16, {}, OFFERED)
    assert ("torch", "bf16") not in paths and "torch bf16: no measured accuracy in the model card" in skipped
    paths, skipped = autotune.candidates(AVX512_BF16, {"torch bf16": OUT}, OFFERED)
    assert ("torch", "bf16") not in paths and any("out of bounds" in s for s in skipped)
    paths, _ = autotune.candidates(AVX512_BF16, both, OFFERED)
    assert ("torch", "bf16") in paths and ("onnxruntime", "int8") in paths
    paths, _ = autotune.candidates(AVX512_BF16, {"torch bf16": IN}, OFFERED[:2])  # what the registry offers, only
    assert paths == [("torch", "fp32"), ("torch", "bf16")]
    # An entry is per runtime: bf16 measured on OpenVINO says nothing about eager PyTorch's bf16.
    paths, skipped = autotune.candidates(AVX512_BF16, {"openvino bf16": IN}, [*OFFERED, ("openvino", "bf16")])
    assert ("openvino", "bf16") in paths and ("torch", "bf16") not in paths
    assert "torch bf16: no measured accuracy in the model card" in skipped


def test_decide_picks_the_fastest_and_says_why():
    times = {("onnxruntime", "fp32"): 0.30, ("torch", "fp32"): 0.50, ("torch", "bf16"): 0.12}
    choice = autotune.decide(list(times), ["int8: no measured accuracy in the model card"], lambda ps: times, {})
    assert (choice.backend, choice.precision) == ("torch", "bf16")
    assert "120 ms vs onnxruntime fp32 300 ms" in choice.reason and "int8" in choice.reason
    assert "\n" not in choice.line()
    times[("torch", "bf16")] = 0.9  # slower than fp32 on some machine: not chosen
    choice = autotune.decide(list(times), [], lambda ps: times, {})
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")


def test_fitting_asks_for_the_fastest_measured_fp32_path(monkeypatch, caplog):
    """fit/evaluate extract fp32 features (training/extract.py): they get the measurement's fastest fp32 path,
    not a fixed preference, even where auto's own pick is a reduced precision."""
    times = {("onnxruntime", "fp32"): 0.30, ("openvino", "fp32"): 0.20, ("openvino", "bf16"): 0.12}
    choice = autotune.decide(list(times), [], lambda ps: times, {})
    assert choice.fastest_at("bf16") == ("openvino", "bf16") and choice.fastest_at("fp32") == ("openvino", "fp32")
    assert choice.fastest_at("int8") is None
    monkeypatch.setattr(autotune, "cached_choice", lambda *a, **k: choice)
    from contrique_video import backends

    with caplog.at_level(logging.DEBUG, logger="contrique_video"):
        assert backends.auto_choice("cpu", builtin_weights(), precision="fp32") == ("openvino", "fp32")
        assert backends.auto_choice("cpu", builtin_weights()) == ("openvino", "bf16")
        assert backends.auto_choice("cpu", builtin_weights(), precision="int8") == ("onnxruntime", "int8")
    assert "backend auto: openvino fp32 (the fastest fp32 path measured here)" in caplog.text
    assert "backend auto: onnxruntime int8 (the preferred int8 path here)" in caplog.text
    assert open_backend(builtin_weights(), "auto", "fp32").describe() == "openvino fp32"


def test_single_candidate_is_not_timed():
    def timer(paths):
        raise AssertionError("nothing to compare")

    choice = autotune.decide([("torch", "fp32")], [], timer, {})
    assert (choice.backend, choice.precision) == ("torch", "fp32")


@pytest.fixture
def bf16_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("Test CPU", AVX512_BF16))
    card = json.loads(builtin_weights().read_text())
    card["weights"]["file"] = str(builtin_weights().parent / card["weights"]["file"])
    card["precisions"] = {"torch bf16": {**IN, "head": card["default_head"]}}  # measured with the head in use
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    return path


def test_choice_is_cached_per_machine_and_model(bf16_machine, monkeypatch, caplog):
    calls = []

    def timer(paths):
        calls.append(paths)
        return {p: {"bf16": 0.1}.get(p[1], 0.3) for p in paths}

    first = autotune.choose(bf16_machine, OFFERED, timer)
    assert (first.backend, first.precision) == ("torch", "bf16") and len(calls) == 1
    again = autotune.choose(bf16_machine, OFFERED, timer)
    assert (again.backend, again.precision) == ("torch", "bf16") and len(calls) == 1  # from the cache
    cached = autotune.cache_path(first.key)
    assert cached.is_file() and first.key["cpu"] == "Test CPU" and "avx512_bf16" in first.key["flags"]
    # Another CPU (other flags) is another key: measured anew, and without bf16 it cannot pick bf16.
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("Other CPU", {"avx2", "fma"}))
    other = autotune.choose(bf16_machine, OFFERED, timer)
    assert other.precision == "fp32" and len(calls) == 2 and autotune.cache_path(other.key) != cached
    # A corrupt cache file is measured again with a warning.
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("Test CPU", AVX512_BF16))
    cached.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        rebuilt = autotune.choose(bf16_machine, OFFERED, timer)
    assert rebuilt.precision == "bf16" and len(calls) == 3
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    assert json.loads(cached.read_text())["precision"] == "bf16"
    # A new accuracy entry in the card (contrique-video precision-check --write-card) is timed, not hidden by the cache.
    card = json.loads(bf16_machine.read_text())
    card["precisions"]["openvino bf16"] = {**IN, "head": card["default_head"]}
    bf16_machine.write_text(json.dumps(card))
    autotune.choose(bf16_machine, [*OFFERED, ("openvino", "bf16")], timer)
    assert len(calls) == 4 and ("openvino", "bf16") in calls[-1]


def test_open_backend_auto_logs_one_line_with_v(bf16_machine, monkeypatch, caplog):
    """After ``bench --autotune`` measured this machine, auto runs the measured choice, not the preference, and
    says so (with the timings) at -v only."""
    from contrique_video.backends import autotune_here

    monkeypatch.setattr(autotune, "measure", lambda open_path, paths: {
        p: {"torch": 0.2}.get(p[0], 0.4) if p[1] == "fp32" else 0.5 for p in paths})
    assert autotune_here(bf16_machine).line().startswith("backend auto: torch fp32 (fastest")
    with caplog.at_level(logging.DEBUG, logger="contrique_video"):
        backend = open_backend(bf16_machine)
    assert backend.describe() == "torch eager fp32 on cpu"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backend auto:")]
    assert len(lines) == 1 and "torch fp32 (fastest" in lines[0]


def test_card_precision_entries_are_complete():
    """Every accuracy entry in the built-in card names its numbers and how they were measured."""
    for precision, entry in get_card(builtin_card()["id"]).precisions.items():
        assert {"srcc_change", "mean_abs_score_change", "max_abs_score_change", "measured"} <= set(entry), precision
        assert isinstance(autotune.accuracy_ok(entry), bool)


def test_cpu_summary_names_flags():
    line = cpu_mod.cpu_summary()
    assert "flags:" in line and "torch capability:" in line and "\n" not in line


def test_cached_choice_measures_nothing(bf16_machine):
    assert autotune.cached_choice(bf16_machine) is None
    made = autotune.choose(bf16_machine, OFFERED, lambda ps: {p: 0.1 if p[1] == "bf16" else 0.2 for p in ps})
    got = autotune.cached_choice(bf16_machine)
    assert got is not None and (got.backend, got.precision, got.reason) == (made.backend, made.precision, made.reason)


def test_a_path_that_cannot_run_is_left_out():
    times = {("torch", "fp32"): 0.5}  # onnxruntime failed to open: missing from the timings
    choice = autotune.decide([("onnxruntime", "fp32"), ("torch", "fp32")], [], lambda ps: times, {})
    assert (choice.backend, choice.precision) == ("torch", "fp32") and "only candidate that ran" in choice.reason
    with pytest.raises(UnsupportedError, match="no CPU path could run"):
        autotune.decide([("onnxruntime", "fp32"), ("torch", "fp32")], [], lambda ps: {}, {})


def test_an_asked_precision_gets_its_fastest_measured_path(bf16_machine, monkeypatch, caplog):
    """bf16 paths without an in-bounds entry are timed but never picked; `--precision bf16` (backend auto) then
    runs the fastest of them, not the first the registry lists."""
    card = json.loads(bf16_machine.read_text())
    card["precisions"] = {"torch bf16": OUT}  # out of bounds: auto must not pick bf16 by itself
    bf16_machine.write_text(json.dumps(card))
    times = {("torch", "fp32"): 0.9, ("openvino", "fp32"): 0.3, ("torch", "bf16"): 0.5, ("openvino", "bf16"): 0.2}
    timed = []

    def timer(paths):
        timed.append(paths)
        return {p: times[p] for p in paths}

    offered = list(times)
    choice = autotune.choose(bf16_machine, offered, timer)
    assert (choice.backend, choice.precision) == ("openvino", "fp32")  # the fastest in bounds
    assert set(timed[0]) == set(offered) and choice.fastest_at("bf16") == ("openvino", "bf16")
    assert "torch bf16: accuracy out of bounds" in choice.reason
    monkeypatch.setattr(autotune, "cached_choice", lambda *a, **k: choice)
    from contrique_video import backends

    assert backends.auto_choice("cpu", bf16_machine, precision="bf16") == ("openvino", "bf16")
    # On a CPU without bf16 nothing at bf16 is timed, and nothing offers it: open_backend refuses in one line.
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(autotune, "cached_choice", lambda *a, **k: autotune.decide(
        [("openvino", "fp32"), ("torch", "fp32")], [], lambda ps: {p: times[p] for p in ps}, {}))
    with pytest.raises(UnsupportedError, match="not bf16"):
        open_backend(bf16_machine, "auto", "bf16")


def test_when_no_path_runs_the_error_says_why_not_that_no_path_ran():
    """A bad weights file fails every path: auto passes the fp32 path's own error on."""

    def open_path(path):
        if path[1] == "fp32":
            raise ModelError(f"cannot read weights x.pt ({path[0]})")
        raise UnsupportedError(f"{path[0]} has no {path[1]}")

    with pytest.raises(ModelError, match=r"cannot read weights x.pt \(torch\)"):
        autotune.measure(open_path, [("torch", "bf16"), ("torch", "fp32"), ("onnxruntime", "fp32")], repeats=1)

    def only_bf16_fails(path):
        if path[1] == "bf16":
            raise UnsupportedError("no bf16")
        return lambda frames: None

    assert set(autotune.measure(only_bf16_fails, [("torch", "bf16"), ("torch", "fp32")], repeats=1)) == {("torch", "fp32")}


def test_auto_prefers_without_timing(bf16_machine, monkeypatch):
    """Without a measurement (``bench --autotune``), auto takes the first allowed path of the fixed preference:
    nothing is timed, so a first run pays no measurement."""
    from contrique_video import backends

    order = backends.PREFERENCE["cpu"]
    offered = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")]
    choice = autotune.prefer(bf16_machine, offered, order)  # the card holds an in-bounds torch bf16 entry only
    assert (choice.backend, choice.precision) == ("torch", "bf16") and choice.timings == {}
    assert "openvino bf16: no measured accuracy in the model card" in choice.reason
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("AVX2 CPU", {"avx2", "fma"}))
    choice = autotune.prefer(bf16_machine, offered, order)
    assert (choice.backend, choice.precision) == ("openvino", "fp32") and "bf16: no amx_bf16/avx512_bf16" in choice.line()
    no_openvino = [p for p in offered if p[0] != "openvino"]
    assert (autotune.prefer(bf16_machine, no_openvino, order).backend) == "onnxruntime"
    with pytest.raises(UnsupportedError, match="no CPU path"):
        autotune.prefer(bf16_machine, [], order)
    assert autotune.cached_choice(bf16_machine) is None  # auto measured nothing
    assert backends.auto_choice("cpu", bf16_machine) == ("openvino", "fp32")


def test_builtin_runs_openvino_bf16_only_where_the_cpu_has_bf16(monkeypatch, tmp_path):
    """The built-in card's OpenVINO bf16 entry (measured with its default head) lies inside the bounds, so auto
    takes OpenVINO bf16 on a CPU with bf16 instructions and OpenVINO fp32 on an AVX2-only one; eager bf16 is out."""
    from contrique_video import backends

    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))  # no measured choice from `bench --autotune`
    card = builtin_card()
    entries = card["precisions"]
    assert entries["openvino bf16"]["head"] == entries["torch bf16"]["head"] == card["default_head"]  # not stale
    assert autotune.accuracy_ok(entries["openvino bf16"]) and not autotune.accuracy_ok(entries["torch bf16"])
    offered = [("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32"), ("openvino", "bf16"), ("torch", "bf16")]
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("Test CPU", AVX512_BF16))
    choice = autotune.prefer(builtin_weights(), offered, backends.PREFERENCE["cpu"])
    assert (choice.backend, choice.precision) == ("openvino", "bf16") and "torch bf16: accuracy out of bounds" in choice.reason
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("AVX2 CPU", {"avx2", "fma"}))
    choice = autotune.prefer(builtin_weights(), offered, backends.PREFERENCE["cpu"])
    assert (choice.backend, choice.precision) == ("openvino", "fp32")


@pytest.mark.skipif(not cpu_mod.native("bf16"), reason="this CPU has no bf16 instructions (the AVX2 side is tested above)")
def test_builtin_auto_opens_openvino_bf16_on_this_bf16_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))
    backend = open_backend(builtin_weights(), "auto")
    assert backend.describe() == "openvino bf16" and backend.inference_precision() == "bf16"


OFFERED_CPU = [("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32"), ("openvino", "bf16"), ("torch", "bf16")]


def test_auto_takes_bf16_only_with_the_head_it_was_measured_with(monkeypatch, tmp_path, caplog):
    """The built-in card's bf16 entry was measured with its default head, clive-v6; nothing was measured for the
    RidgeCV head, so a user's --head clive runs fp32, and -v says why."""
    from contrique_video import backends
    from contrique_video.api import Scorer, builtin_model
    from contrique_video.backends import BackendChoice, resolve_choice

    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))  # no measured choice from `bench --autotune`
    monkeypatch.setattr(autotune, "read_cpuinfo", lambda: ("Test CPU", AVX512_BF16))
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: AVX512_BF16)
    assert builtin_card()["precisions"]["openvino bf16"]["head"] == "clive-v6"
    order = backends.PREFERENCE["cpu"]
    assert autotune.prefer(builtin_weights(), OFFERED_CPU, order).precision == "bf16"  # the default head, clive-v6
    assert autotune.prefer(builtin_weights(), OFFERED_CPU, order, head="clive-v6").precision == "bf16"
    choice = autotune.prefer(builtin_weights(), OFFERED_CPU, order, head="clive")
    assert (choice.backend, choice.precision) == ("openvino", "fp32")
    assert "openvino bf16: measured with head clive-v6, not clive" in choice.reason
    model = builtin_model()
    with caplog.at_level(logging.DEBUG, logger="contrique_video"):
        assert resolve_choice(model, BackendChoice("auto", head="clive")).precision == "fp32"
    assert any("measured with head clive-v6, not clive" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG)
    assert resolve_choice(model, BackendChoice("auto")).precision == "bf16"
    # The Scorer hands the head it scores with to auto: a named one, else the model's default.
    seen = []
    monkeypatch.setattr("contrique_video.api.open_choice",
                        lambda m, c: seen.append(resolve_choice(m, c)) or open_backend(m, "torch", "fp32"))
    Scorer(backend="auto", head="clive")
    Scorer(backend="auto")
    assert [(c.head, c.precision) for c in seen] == [("clive", "fp32"), (None, "bf16")]
    # An entry that names no head says nothing of the head in use.
    assert autotune.candidates(AVX512_BF16, {"openvino bf16": IN}, OFFERED_CPU, "clive-v6")[0] == OFFERED_CPU[:3]


def test_a_measured_bf16_choice_is_not_used_for_another_head(bf16_machine, monkeypatch, caplog):
    """`bench --autotune` measured torch bf16 fastest (its entry measured with the default head): another head
    gets the fastest fp32 path measured, and -v says why."""
    from contrique_video import backends

    times = {("openvino", "fp32"): 0.2, ("torch", "fp32"): 0.3, ("torch", "bf16"): 0.1}
    choice = autotune.decide([*times], [], lambda ps: {p: times[p] for p in ps}, {})
    monkeypatch.setattr(autotune, "cached_choice", lambda *a, **k: choice)
    assert backends.auto_choice("cpu", bf16_machine) == ("torch", "bf16")
    with caplog.at_level(logging.DEBUG, logger="contrique_video"):
        assert backends.auto_choice("cpu", bf16_machine, head="clive") == ("openvino", "fp32")
    assert any("not measured with head clive" in r.getMessage() for r in caplog.records)


def test_a_card_without_precision_entries_extracts_features_before_its_head_file_exists(tmp_path, monkeypatch):
    """Fitting a new card's first head: the card names ``mine.json`` beside it, which the fit writes, so auto
    must not read it to choose a path (nothing measured to compare it with); scoring still needs it, in one line."""
    import numpy as np

    from contrique_video.training.ranking import model_features

    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONTRIQUE_VIDEO_BACKEND")  # the suite pins torch; auto is what this is about
    raw = builtin_card()
    raw.pop("precisions", None)
    raw["default_head"] = "mine.json"
    (tmp_path / "card.json").write_text(json.dumps(raw))
    ir = raw["weights"]["openvino_ir"]["file"]
    for name in (raw["weights"]["file"], ir, ir.replace(".xml", ".bin")):
        (tmp_path / name).symlink_to(builtin_weights().parent / name)
    extract, scorer = model_features(tmp_path / "card.json")  # backend and precision auto
    assert extract(np.zeros((64, 64, 3), np.uint8)).shape == (raw["feature_dim"],)
    with pytest.raises(ModelError, match="head file not found: .*mine.json"):
        scorer.check_head()
