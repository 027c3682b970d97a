"""Real input data for the corpus: photos, rendered text lines, sentences, digits.

Photos are scikit-image's bundled images (no download), cropped and resized per model by
a recipe from the manifest; sample ``k`` of a recipe is always the same array, and
calibration and evaluation take disjoint ranges of ``k`` (``offset``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/TTF")]

NATURAL = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
           "coins", "moon", "brick", "grass", "gravel", "clock", "colorwheel", "retina", "logo"]
DOCUMENTS = ["page", "text", "clock", "coins", "camera"]
# (top, left, size) of the astronaut's face, and of face-like crops of the other portraits.
FACES = [("astronaut", 20, 150, 220), ("astronaut", 0, 120, 280), ("astronaut", 50, 170, 170),
         ("camera", 40, 200, 140), ("chelsea", 40, 120, 200), ("astronaut", 10, 160, 240)]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as RGB uint8 [H, W, 3]."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def _crop(img: np.ndarray, k: int, aspect: float) -> np.ndarray:
    """A deterministic crop of ``img`` (sample ``k``) with width/height ``aspect``."""
    rng = np.random.default_rng(1000 + k)
    ih, iw = img.shape[:2]
    scale = 0.6 + 0.4 * rng.random()
    ch = int(min(ih, iw / aspect) * scale)
    cw = int(ch * aspect)
    top = int(rng.integers(0, ih - ch + 1))
    left = int(rng.integers(0, iw - cw + 1))
    out = img[top:top + ch, left:left + cw]
    return out[:, ::-1] if rng.random() < 0.5 else out


def _letterbox(img: np.ndarray, h: int, w: int, fill: int = 114) -> np.ndarray:
    r = min(h / img.shape[0], w / img.shape[1])
    nh, nw = max(1, int(img.shape[0] * r)), max(1, int(img.shape[1] * r))
    out = np.full((h, w, 3), fill, np.uint8)
    out[:nh, :nw] = _resize(img, nh, nw)
    return out


def _source(recipe: dict, k: int) -> np.ndarray:
    kind = recipe.get("photos", "natural")
    if kind == "faces":
        name, top, left, size = FACES[k % len(FACES)]
        img = photo(name)
        rng = np.random.default_rng(2000 + k)
        dy, dx = (int(v) for v in rng.integers(-15, 16, size=2))
        t, le = max(0, top + dy), max(0, left + dx)
        return img[t:t + size, le:le + size]
    if kind == "pages":
        return document_page(recipe["size"], k)
    names = DOCUMENTS if kind == "documents" else NATURAL
    img = photo(names[k % len(names)])
    if recipe.get("rotate"):
        img = np.rot90(img, k % 4)
    return img


def document_page(size: tuple[int, int], k: int) -> np.ndarray:
    """Sample ``k`` of a rendered document page, RGB uint8 [H, W, 3]: what a layout detector reads.

    Paper with a title, paragraphs of real sentences, and (by sample) a figure (a scikit-image
    photo with a caption), a ruled table, a header and a footer line, in one or two columns.
    """
    from PIL import Image, ImageDraw

    h, w = size
    rng = np.random.default_rng(4000 + k)
    page = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(235, 256, 3)))
    draw = ImageDraw.Draw(page)
    ink = tuple(int(v) for v in rng.integers(0, 50, 3))
    lines = sentences()
    margin = int(w * (0.06 + 0.04 * rng.random()))
    body = font(int(rng.integers(11, 16)))
    line_h = int(body.size * 1.5)
    y = margin
    if rng.random() < 0.7:  # header
        draw.text((margin, y // 2), lines[int(rng.integers(len(lines)))][:40], fill=(110, 110, 110), font=font(10))
    title = font(int(rng.integers(20, 30)))
    draw.text((margin, y), lines[int(rng.integers(len(lines)))][:32].title(), fill=ink, font=title)
    y += int(title.size * 2)
    cols = 2 if rng.random() < 0.4 else 1
    col_w = (w - 2 * margin - (cols - 1) * margin // 2) // cols
    for c in range(cols):
        x0, yy = margin + c * (col_w + margin // 2), y
        while yy < h - margin - line_h:
            block = rng.random()
            if block < 0.15 and yy < h * 0.6:  # a figure with a caption
                fh = int(min(col_w * 0.7, h * 0.25))
                img = photo(NATURAL[int(rng.integers(len(NATURAL)))])
                page.paste(Image.fromarray(img).resize((col_w, fh), Image.BILINEAR), (x0, yy))
                yy += fh + 4
                draw.text((x0, yy), "Figure %d. " % (k % 9 + 1) + lines[int(rng.integers(len(lines)))][:30],
                          fill=ink, font=font(10))
                yy += line_h * 2
            elif block < 0.27 and yy < h * 0.7:  # a ruled table
                rows, ncol = int(rng.integers(3, 7)), int(rng.integers(2, 5))
                cw = col_w // ncol
                for r in range(rows + 1):
                    draw.line([(x0, yy + r * line_h), (x0 + cw * ncol, yy + r * line_h)], fill=ink, width=1)
                for j in range(ncol + 1):
                    draw.line([(x0 + j * cw, yy), (x0 + j * cw, yy + rows * line_h)], fill=ink, width=1)
                for r in range(rows):
                    for j in range(ncol):
                        draw.text((x0 + j * cw + 3, yy + r * line_h + 2), str(int(rng.integers(10, 9999))),
                                  fill=ink, font=body)
                yy += rows * line_h + line_h
            else:  # a paragraph
                words = " ".join(lines[int(rng.integers(len(lines)))] for _ in range(4)).split()
                text = ""
                for word in words:
                    if draw.textlength(text + " " + word, font=body) > col_w:
                        draw.text((x0, yy), text, fill=ink, font=body)
                        yy += line_h
                        text = word
                        if yy >= h - margin - line_h:
                            break
                    else:
                        text = (text + " " + word).strip()
                yy += line_h
    if rng.random() < 0.7:  # footer: a page number
        draw.text((w // 2, h - margin // 2 - 10), str(int(rng.integers(1, 300))), fill=ink, font=font(10))
    return np.asarray(page)


def photo_sample(recipe: dict, k: int) -> np.ndarray:
    """Sample ``k`` of a photo recipe, as float32 [1, C, H, W] or [1, H, W, C]."""
    h, w = recipe["size"]
    img = _source(recipe, k)
    how = recipe.get("resize", "crop")
    if how == "letterbox":
        img = _letterbox(img, h, w)
    elif how == "stretch":
        img = _resize(np.ascontiguousarray(img), h, w)
    else:
        img = _resize(np.ascontiguousarray(_crop(img, k, w / h)), h, w)
    x = img.astype(np.float32)
    if recipe.get("channels", 3) == 1:
        x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif recipe.get("bgr"):
        x = x[..., ::-1]
    x = x * recipe.get("scale", 1.0 / 255.0)
    if "mean" in recipe:
        x = (x - np.asarray(recipe["mean"], np.float32)) / np.asarray(recipe.get("std", 1.0), np.float32)
    if recipe.get("layout", "NCHW") == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def imagenet_batch(n: int, size: int = 224, offset: int = 0) -> np.ndarray:
    """``n`` natural photos, ImageNet-normalized NCHW [n, 3, size, size]."""
    recipe = {"size": [size, size], "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return np.concatenate([photo_sample(recipe, offset + k) for k in range(n)])


def labelled_crops(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random square crops (30-100 % of the short side, random flip) of the natural photos,
    ImageNet-normalized NCHW [n, 3, size, size], and which photo each came from (int64 [n])."""
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    photos = [photo(name) for name in NATURAL]
    xs, ys = [], []
    for _ in range(n):
        c = int(rng.integers(len(NATURAL)))
        img = photos[c]
        ih, iw = img.shape[:2]
        s = int(min(ih, iw) * (0.3 + 0.7 * rng.random()))
        top, left = int(rng.integers(0, ih - s + 1)), int(rng.integers(0, iw - s + 1))
        crop = img[top:top + s, left:left + s]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        x = _resize(np.ascontiguousarray(crop), size, size).astype(np.float32) / 255.0
        xs.append(((x - mean) / std).transpose(2, 0, 1))
        ys.append(c)
    return np.ascontiguousarray(np.stack(xs), dtype=np.float32), np.asarray(ys, np.int64)


def font(size: int, mono: bool = False):
    from PIL import ImageFont

    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    for d in FONT_DIRS:
        if (d / name).is_file():
            return ImageFont.truetype(str(d / name), size)
    raise FileNotFoundError(f"{name} not found: install the Debian package fonts-dejavu-core")


def text_line_sample(recipe: dict, k: int) -> np.ndarray:
    """A rendered text line (captcha-like string, dark on light) as float32 [1, 1, H, W]."""
    from PIL import Image, ImageDraw

    h, w = recipe["size"]
    rng = np.random.default_rng(3000 + k)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
    text = "".join(rng.choice(list(alphabet), size=int(rng.integers(4, 8))))
    f = font(int(h * (0.55 + 0.25 * rng.random())), mono=bool(k % 2))
    img = Image.new("L", (w, h), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(img)
    x0 = int(rng.integers(2, max(3, w // 8)))
    draw.text((x0, int(h * 0.1)), text, fill=int(rng.integers(0, 60)), font=f)
    x = np.asarray(img, np.float32) * recipe.get("scale", 1.0 / 255.0)
    if "mean" in recipe:
        x = (x - recipe["mean"]) / recipe.get("std", 1.0)
    return x[None, None].astype(np.float32)


def digits_sample(k: int) -> np.ndarray:
    """Sample ``k`` of the digits CNN's held-out split, [1, 1, 32, 32] in [0, 1]."""
    return _digits()[0][k % len(_digits()[0])][None]


def digits_label(k: int) -> int:
    return int(_digits()[1][k % len(_digits()[1])])


_DIGITS: list = []


def _digits():
    if not _DIGITS:
        import importlib.util

        spec = importlib.util.spec_from_file_location("edgec_digits_example", ROOT / "examples/digits_cnn/model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _, _, xte, yte = mod.load_digits_split()
        _DIGITS.extend([xte, yte])
    return _DIGITS


def sentences() -> list[str]:
    """The MiniLM example's sentences, then its evaluation sentences (real English text)."""
    lines = []
    for f in ("sentences.txt", "eval_sentences.txt"):
        for line in (ROOT / "examples/minilm" / f).read_text().splitlines():
            line = line.split("\t")[-1].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines
