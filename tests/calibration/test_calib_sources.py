"""Calibration data sources: .npz, .npy, folders of .npy/.npz, random, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from _calib_util import spec

from edgec.calibration import load_calibration_data
from edgec.errors import CalibrationDataError, ConfigError

IMG = [spec("x", ("N", 3, 8, 8))]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_samples_order_labels_and_cast(tmp_path):
    x = np.arange(10 * 3 * 8 * 8, dtype=np.float64).reshape(10, 3, 8, 8)
    labels = np.arange(10)
    data = load_calibration_data(_npz(tmp_path / "d.npz", x=x, labels=labels), IMG, max_samples=4)
    assert (len(data), data.kind, data.random, data.source) == (4, "npz", False, str(tmp_path / "d.npz"))
    for k, s in enumerate(data):
        assert list(s) == ["x"] and s["x"].shape == (1, 3, 8, 8) and s["x"].dtype == np.float32
        np.testing.assert_array_equal(s["x"][0], x[k].astype(np.float32))
    np.testing.assert_array_equal(data.labels, labels[:4])
    assert data.stacked()["x"].shape == (4, 3, 8, 8)


def test_npz_multi_input_int_cast_and_symbolic_dim(tmp_path):
    inputs = [spec("input_ids", ("batch", "seq"), "int32"), spec("attention_mask", ("batch", "seq"), "int64")]
    ids = np.arange(30, dtype=np.int64).reshape(5, 6)
    data = load_calibration_data(_npz(tmp_path / "t.npz", input_ids=ids, attention_mask=np.ones((5, 6), np.int32)), inputs)
    assert len(data) == 5 and data.labels is None
    s = data.samples[2]
    assert s["input_ids"].dtype == np.int32 and s["attention_mask"].dtype == np.int64
    assert s["input_ids"].shape == (1, 6)  # the symbolic 'seq' takes the data's size
    np.testing.assert_array_equal(s["input_ids"][0], ids[2])


def test_static_batch_groups_rows(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    data = load_calibration_data(_npz(tmp_path / "b.npz", x=x, labels=np.arange(7)), [spec("x", (2, 4))])
    assert len(data) == 3 and data.samples[1]["x"].shape == (2, 4)
    np.testing.assert_array_equal(data.samples[1]["x"], x[2:4])
    assert data.labels.tolist() == [0, 1, 2, 3, 4, 5]


def test_npz_documented_form_and_mixed_leading_dims(tmp_path):
    """[samples, *model shape] is read as documented; inputs with different leading dims calibrate together."""
    path = _npz(tmp_path / "doc.npz", x=np.arange(3 * 7 * 5, dtype=np.float32).reshape(3, 1, 1, 7, 5),
                t=np.ones((3, 4, 5), np.float32))
    data = load_calibration_data(path, [spec("x", (1, 1, 7, 5)), spec("t", (4, 5))])
    assert len(data) == 3
    assert data.samples[2]["x"].shape == (1, 1, 7, 5) and data.samples[2]["t"].shape == (4, 5)
    assert data.samples[2]["x"][0, 0, 0, 0] == 2 * 35


@pytest.mark.parametrize(
    "arrays, inputs, message",
    [
        ({"x": np.zeros((10, 3, 28, 28), np.float32)}, IMG[:0] + [spec("x", ("N", 3, 32, 32))],
         r"calibration input 'x' in '.*' has shape \[10, 3, 28, 28\]: axis 2 is 28, expected 32 \(the model input is "
         r"\[N, 3, 32, 32\]; give \[samples, N, 3, 32, 32\]"),
        ({"x": np.zeros((10, 784), np.float32)}, [spec("x", (1, 1, 28, 28))],
         r"has shape \[10, 784\]: rank 2, expected rank 5 \[samples, 1, 1, 28, 28\]"),
        ({"x": np.zeros((2, 3, 8, 8), np.float32), "y": np.zeros((2, 1))}, IMG,
         r"has unknown key\(s\) 'y'; expected keys 'x' \(plus optional 'labels'\)"),
        ({"y": np.zeros((2, 3, 8, 8), np.float32)}, IMG, r"lacks input\(s\) 'x' and has unknown key\(s\) 'y'"),
        ({"x": np.zeros((2, 3, 8, 8), np.int64)}, IMG,
         r"for input 'x' has dtype int64, model expects float32 \(float values\)"),
        ({"ids": np.zeros((2, 5), np.float32)}, [spec("ids", (1, 5), "int64")],
         r"for input 'ids' has dtype float32, model expects int64 \(integer ids\)"),
        ({"x": np.zeros((0, 3, 8, 8), np.float32)}, IMG, r"holds no samples; expected at least one"),
        ({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, [spec("a", (1, 2)), spec("b", (1, 2))],
         r"different sample counts per input \('a': 3, 'b': 4\)"),
        ({"x": np.zeros((3, 3, 8, 8)), "labels": np.zeros(2)}, IMG, r"has 2 labels for 3 samples"),
        ({"x": np.float32(1.0)}, IMG, r"has shape \[\]: rank 0, expected rank 5"),
        ({"x": np.zeros((1, 4))}, [spec("x", (3, 4))], r"has 1 rows for input 'x', fewer than its leading dimension 3"),
    ],
)
def test_npz_errors(tmp_path, arrays, inputs, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CalibrationDataError, match=message) as exc:
        load_calibration_data(path, inputs)
    assert "\n" not in str(exc.value)


def test_unreadable_and_missing_paths(tmp_path):
    with pytest.raises(CalibrationDataError, match=r"calibration data '.*nope.npz' does not exist; expected an .npz"):
        load_calibration_data(str(tmp_path / "nope.npz"), IMG)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CalibrationDataError, match=r"cannot read calibration file '.*corrupt.npz'"):
        load_calibration_data(str(tmp_path / "corrupt.npz"), IMG)
    np.save(tmp_path / "arr.npy", np.zeros((2, 3, 8, 8)))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "arr.npy").read_bytes()[:200])
    with pytest.raises(CalibrationDataError, match="cannot read calibration file '.*trunc.npy'"):
        load_calibration_data(str(tmp_path / "trunc.npy"), IMG)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CalibrationDataError, match="cannot read calibration file"):
        load_calibration_data(str(tmp_path / "obj.npy"), IMG)
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(CalibrationDataError, match=r"unsupported format '.csv'; expected an .npz"):
        load_calibration_data(str(tmp_path / "d.csv"), IMG)
    with pytest.raises(ConfigError, match="max_samples must be at least 1"):
        load_calibration_data("random", IMG, max_samples=0)


def test_single_npy_file(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 3, 8, 8), np.float64))
    data = load_calibration_data(str(tmp_path / "x.npy"), IMG)
    assert (len(data), data.kind, data.samples[0]["x"].dtype) == (3, "npy", np.float32)
    with pytest.raises(CalibrationDataError, match=r"feeds single-input models, this model has inputs 'a', 'b'"):
        load_calibration_data(str(tmp_path / "x.npy"), [spec("a", (1, 2)), spec("b", (1, 2))])


def test_npy_folder_sorted_with_and_without_batch_axis(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((3, 8, 8)).astype(np.float32) for _ in range(5)]
    for k, a in enumerate(arrays):
        np.save(folder / f"s{k:02d}.npy", a if k % 2 else a[None])  # alternate: with / without batch axis
    (folder / "README.md").write_text("ignored")
    (folder / ".hidden.npy").write_bytes(b"junk")
    data = load_calibration_data(str(folder), IMG, max_samples=4)
    assert (len(data), data.kind) == (4, "npy-folder")
    for k in range(4):
        np.testing.assert_array_equal(data.samples[k]["x"][0], arrays[k])
    np.save(folder / "s99.npy", np.zeros((3, 9, 9), np.float32))
    with pytest.raises(CalibrationDataError, match=r"calibration file '.*s99.npy' for input 'x' has shape \[3, 9, 9\], "
                                                   r"model expects \[1, 3, 8, 8\] \(one sample, with or without the batch axis\)"):
        load_calibration_data(str(folder), IMG)
    (folder / "s99.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CalibrationDataError, match="cannot read calibration file '.*s99.npy'"):
        load_calibration_data(str(folder), IMG)


def test_npz_folder(tmp_path):
    folder = tmp_path / "npz"
    folder.mkdir()
    inputs = [spec("a", ("N", 2)), spec("b", ("N", 3), "int64")]
    for k in range(3):
        np.savez(folder / f"{k}.npz", a=np.full((2,), k, np.float32), b=np.full((1, 3), k), labels=np.array(k))
    data = load_calibration_data(str(folder), inputs)
    assert (len(data), data.kind) == (3, "npz-folder")
    assert data.samples[2]["a"].tolist() == [[2.0, 2.0]] and data.samples[2]["b"].shape == (1, 3)
    assert data.labels.tolist() == [0, 1, 2]
    np.savez(folder / "3.npz", a=np.zeros(2, np.float32))
    with pytest.raises(CalibrationDataError, match=r"'.*3.npz' lacks input\(s\) 'b'; expected keys 'a', 'b'"):
        load_calibration_data(str(folder), inputs)


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(CalibrationDataError, match=r"calibration folder '.*empty' has no .npy, .npz or image"):
        load_calibration_data(str(empty), IMG)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.zeros((3, 8, 8)))
    np.savez(mixed / "b.npz", x=np.zeros((3, 8, 8)))
    with pytest.raises(CalibrationDataError, match="mixes npy and npz files; expected one kind"):
        load_calibration_data(str(mixed), IMG)


def test_random_is_deterministic_and_typed(tmp_path):
    inputs = [spec("pixel", ("N", 3, 4, 4)), spec("input_ids", (1, 16), "int64"),
              spec("attention_mask", (1, 16), "int64"), spec("token_type_ids", (1, 16), "int64"),
              spec("position_ids", (1, 16), "int32")]
    a = load_calibration_data("random", inputs, max_samples=3, seed=5)
    b = load_calibration_data("random", inputs, max_samples=3, seed=5)
    c = load_calibration_data("random", inputs, max_samples=3, seed=6)
    assert (len(a), a.random, a.kind, a.source) == (3, True, "random", "random")
    for sa, sb in zip(a, b):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    assert not np.array_equal(a.samples[0]["pixel"], c.samples[0]["pixel"])
    s = a.samples[0]
    assert s["pixel"].shape == (1, 3, 4, 4) and s["pixel"].dtype == np.float32
    assert s["input_ids"].dtype == np.int64 and 0 <= s["input_ids"].min() and s["input_ids"].max() < 1000
    assert (s["attention_mask"] == 1).all() and (s["token_type_ids"] == 0).all()
    assert s["position_ids"].tolist() == [list(range(16))]
    (tmp_path / "config.json").write_text('{"vocab_size": 7}')
    small = load_calibration_data("random", inputs[1:2], max_samples=20, tokenizer_dir=tmp_path)
    assert max(int(x["input_ids"].max()) for x in small) < 7
    with pytest.raises(CalibrationDataError, match=r"has shape \[1, seq\] with symbolic dim\(s\) seq; random calibration"):
        load_calibration_data("random", [spec("input_ids", (1, "seq"), "int64")])
