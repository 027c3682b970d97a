"""Image folders with --preprocess, and text files tokenized with a tokenizer built in code."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _calib_util import save_tokenizer, spec

from edgec.calibration import PreprocessConfig, load_calibration_data
from edgec.calibration.sources import parse_preprocess
from edgec.errors import CalibrationDataError, ConfigError

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = []
    for k, suffix in enumerate([".png", ".bmp", ".png", ".PNG"]):
        arr = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)  # H=6, W=5
        Image.fromarray(arr).save(folder / f"img{k}{suffix}")
        pixels.append(arr)
    return folder, pixels


def test_images_nchw_default_preprocess(image_folder):
    folder, pixels = image_folder
    data = load_calibration_data(str(folder), [spec("x", ("N", 3, 6, 5))], max_samples=3)
    assert (len(data), data.kind) == (3, "images")
    for k in range(3):  # sorted names; the resize is a no-op at the model's size
        np.testing.assert_allclose(data.samples[k]["x"][0], pixels[k].transpose(2, 0, 1) / 255.0, atol=1e-6)
        assert data.samples[k]["x"].dtype == np.float32


def test_images_nhwc_mean_std_and_resize(image_folder):
    folder, pixels = image_folder
    cfg = parse_preprocess("mean=0.5/0.4/0.3,std=0.2/0.25/0.5")
    # layout stays NCHW in the config, but [1, 6, 5, 3] can only be NHWC: the shape decides.
    data = load_calibration_data(str(folder), [spec("x", (1, 6, 5, 3))], preprocess=cfg)
    want = (pixels[0] / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.5])
    np.testing.assert_allclose(data.samples[0]["x"][0], want, atol=1e-5)
    small = load_calibration_data(str(folder), [spec("x", (1, 3, 4, 4))])
    assert small.samples[0]["x"].shape == (1, 3, 4, 4)
    ref = np.asarray(Image.fromarray(pixels[0]).resize((4, 4), Image.BILINEAR), np.float32) / 255.0
    np.testing.assert_allclose(small.samples[0]["x"][0], ref.transpose(2, 0, 1), atol=1e-6)
    # Symbolic spatial dims: resize= picks the size.
    sized = load_calibration_data(str(folder), [spec("x", ("N", 3, "h", "w"))], preprocess=parse_preprocess("resize=3x2"))
    assert sized.samples[0]["x"].shape == (1, 3, 3, 2)


def test_images_grayscale(image_folder):
    folder, pixels = image_folder
    data = load_calibration_data(str(folder), [spec("x", (1, 1, 6, 5))])
    gray = np.asarray(Image.fromarray(pixels[0]).convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(data.samples[0]["x"][0, 0], gray, atol=1e-6)
    rgb_gray = load_calibration_data(str(folder), [spec("x", (1, 3, 6, 5))], preprocess=parse_preprocess("grayscale=1"))
    chans = rgb_gray.samples[0]["x"][0]
    np.testing.assert_allclose(chans[0], chans[2])


def test_image_errors(image_folder, tmp_path):
    folder, _ = image_folder
    with pytest.raises(CalibrationDataError, match=r"resize=8x8 does not fit model input 'x' \[1, 3, 6, 5\]; expected 6x5"):
        load_calibration_data(str(folder), [spec("x", (1, 3, 6, 5))], preprocess=parse_preprocess("resize=8x8"))
    with pytest.raises(CalibrationDataError, match=r"needs a 4-D image input .* model input 'x' has shape \[1, 30\]"):
        load_calibration_data(str(folder), [spec("x", (1, 30))])
    with pytest.raises(CalibrationDataError, match=r"has 5 channels in NCHW; expected 1 \(grayscale\), 3 \(RGB\)"):
        load_calibration_data(str(folder), [spec("x", (1, 5, 6, 5))])
    with pytest.raises(ConfigError, match="mean has 2 values but model input 'x' has 3 channels; expected 1 or 3"):
        load_calibration_data(str(folder), [spec("x", (1, 3, 6, 5))], preprocess=PreprocessConfig(mean=(0.1, 0.2)))
    with pytest.raises(CalibrationDataError, match="feeds single-input models"):
        load_calibration_data(str(folder), [spec("x", (1, 3, 6, 5)), spec("y", (1, 2))])
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(CalibrationDataError, match=r"cannot read image '.*zz_broken.png'"):
        load_calibration_data(str(folder), [spec("x", (1, 3, 6, 5))])


def test_parse_preprocess():
    cfg = parse_preprocess("resize=32x24, mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=nhwc,grayscale=0")
    assert cfg.resize == (32, 24) and cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    assert (cfg.layout, cfg.grayscale) == ("NHWC", False)
    assert parse_preprocess("resize=32").resize == (32, 32)
    assert parse_preprocess("") == PreprocessConfig()
    for text, msg in [
        ("resize=32x", "invalid --preprocess resize='32x'; expected HEIGHTxWIDTH"),
        ("mean=a/b", "invalid --preprocess mean='a/b'; expected numbers separated by '/'"),
        ("std=1/0", "invalid --preprocess std='1/0'; expected positive numbers"),
        ("layout=CHW", "invalid --preprocess layout='CHW'; expected NCHW or NHWC"),
        ("grayscale=maybe", "invalid --preprocess grayscale='maybe'; expected 1 or 0"),
        ("size=3", "invalid --preprocess item 'size=3'; expected key=value with key one of resize, mean, std"),
        ("resize", "invalid --preprocess item 'resize'"),
        ("layout=NCHW,layout=NHWC", "--preprocess key 'layout' is given twice"),
    ]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("?", r"\?")):
            parse_preprocess(text)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return save_tokenizer(tmp_path_factory.mktemp("tok"))


BERT_INPUTS = [spec("input_ids", ("batch", 8), "int64"), spec("attention_mask", ("batch", 8), "int64"),
               spec("token_type_ids", ("batch", 8), "int32")]


def test_text_txt_and_jsonl(tmp_path, tokenizer_dir):
    txt = tmp_path / "c.txt"
    txt.write_text("hello world\n\nthe cat sat on a mat and then some more words\ndog\n", encoding="utf-8")
    data = load_calibration_data(str(txt), BERT_INPUTS, tokenizer_dir=tokenizer_dir)
    assert (len(data), data.kind) == (3, "text")
    s = data.samples[0]
    assert list(s) == ["input_ids", "attention_mask", "token_type_ids"]
    assert s["input_ids"].tolist() == [[2, 4, 5, 3, 0, 0, 0, 0]]  # [CLS] hello world [SEP] + padding
    assert s["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]
    assert s["token_type_ids"].dtype == np.int32 and s["input_ids"].dtype == np.int64
    assert data.samples[1]["input_ids"].shape == (1, 8) and data.samples[1]["input_ids"][0, -1] == 3  # truncated

    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps(o) for o in [{"text": "hello", "text_pair": "cat"}, {"text": "dog ran"}]))
    pairs = load_calibration_data(str(jl), BERT_INPUTS[:1] + BERT_INPUTS[2:], tokenizer_dir=tokenizer_dir, max_samples=1)
    assert len(pairs) == 1
    assert pairs.samples[0]["input_ids"].tolist() == [[2, 4, 3, 7, 3, 0, 0, 0]]
    assert pairs.samples[0]["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0, 0]]
    # Dynamic sequence length, batch 1: each sample keeps its own length.
    dyn = load_calibration_data(str(txt), [spec("input_ids", ("b", "s"), "int64")], tokenizer_dir=tokenizer_dir)
    assert [x["input_ids"].shape for x in dyn] == [(1, 4), (1, 13), (1, 3)]


def test_text_errors(tmp_path, tokenizer_dir):
    txt = tmp_path / "c.txt"
    txt.write_text("hello\n")
    with pytest.raises(CalibrationDataError, match=r"text calibration data '.*c.txt' needs a tokenizer, and the model has none"):
        load_calibration_data(str(txt), BERT_INPUTS)
    with pytest.raises(CalibrationDataError, match=r"text calibration data feeds inputs named input_ids.*the model has 'pixel'"):
        load_calibration_data(str(txt), [spec("pixel", (1, 3))], tokenizer_dir=tokenizer_dir)
    with pytest.raises(CalibrationDataError, match="cannot load a tokenizer from"):
        load_calibration_data(str(txt), BERT_INPUTS, tokenizer_dir=tmp_path / "no_tokenizer_here")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(CalibrationDataError, match=r"'.*bad.jsonl' line 2 is not valid JSON"):
        load_calibration_data(str(bad), BERT_INPUTS, tokenizer_dir=tokenizer_dir)
    bad.write_text('{"txt": "ok"}\n')
    with pytest.raises(CalibrationDataError, match=r"line 1 has no string 'text'"):
        load_calibration_data(str(bad), BERT_INPUTS, tokenizer_dir=tokenizer_dir)
    empty = tmp_path / "e.txt"
    empty.write_text("\n  \n")
    with pytest.raises(CalibrationDataError, match="holds no texts"):
        load_calibration_data(str(empty), BERT_INPUTS, tokenizer_dir=tokenizer_dir)
