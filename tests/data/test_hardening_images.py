"""Images from anywhere: empty, truncated and random files, wrong extensions, decompression bombs, unusual
colour modes, EXIF rotation, 1x1 strips and very large photos, and uploads over the size limit.

A bad file is refused with one sentence naming it, wherever it comes in: ``read_image`` (the library), the
dataset reader, ``segcore predict`` and the dashboard's Live page. Where cheap, a test first shows what
plain PIL does with the same file, so the others fail if segcore's protection goes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from streamlit.testing.v1 import AppTest

from segcore.app import live
from segcore.cli import main
from segcore.data import images
from segcore.data.coco import CocoSegmentation
from segcore.data.images import MAX_PIXELS, read_image
from segcore.errors import DatasetError, SegcoreError
from segcore.models import MODELS, create_model, model_options
from segcore.predictor import LoadedModel
from segcore.runs import checkpoints
from segcore.training.config import TrainConfig
from segcore.training.loop import train
from segcore.visualize import overlay
from tests.conftest import TINY_OPTIONS

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "dashboard" / "app.py")

DAMAGED = "zero-byte, truncated and random-bytes image files"
DAMAGED_HANDLED = "refused with one sentence naming the file"
BOMB = "decompression bombs: a small file declaring a huge image"
BOMB_HANDLED = "refused from the header, before decoding, naming segcore's pixel limit"


# ---- files ----

def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise(height: int = 64, width: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def damaged(kind: str) -> bytes:
    """A damaged image file of one kind."""
    if kind == "zero-byte":
        return b""
    if kind == "random bytes":
        return np.random.default_rng(1).bytes(4096)
    whole = encoded(noise(), {"PNG cut in half": "PNG", "JPEG cut in half": "JPEG"}[kind])
    return whole[: len(whole) // 2]


#: What each damage is called in the message.
PROBLEM = {"zero-byte": "is empty (0 bytes)", "PNG cut in half": "is truncated: the file ends before its pixels do",
           "JPEG cut in half": "is truncated: the file ends before its pixels do",
           "random bytes": "cannot be read as an image"}
KINDS = list(PROBLEM)


def png_declaring(width: int, height: int, *, pixels: bool = True, rgb: bool = False) -> bytes:
    """A valid 8-bit grey (or RGB) PNG of width x height black pixels (zlib shrinks them ~1000 times), or
    with ``pixels=False`` its header alone: decoding it would fail as truncated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = b""
    if pixels:
        row, packer = bytes(1 + width * (3 if rgb else 1)), zlib.compressobj(9)  # filter byte 0, then pixels
        data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message and "Traceback" not in message


# ---- a model for the command line and a run for the Live page ----

@pytest.fixture(scope="module")
def unet_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny U-Net as a segcore checkpoint file."""
    options = model_options("unet", **TINY_OPTIONS["unet"])
    model = MODELS["unet"].build(options, num_classes=3)
    path = tmp_path_factory.mktemp("weights") / "unet.pt"
    checkpoints.save_atomic(checkpoints.checkpoint(model, model_name="unet", options=options,
                                                   class_names=["square", "disc"]), path)
    return path


@pytest.fixture(scope="module")
def live_runs(shapes, tmp_path_factory) -> Path:
    """A runs folder holding one U-Net trained for one iteration: enough for the Live page."""
    root = tmp_path_factory.mktemp("live") / "runs"
    train(TrainConfig(model="unet", data=str(shapes), out=str(root / "unet"), max_iters=1, batch_size=1,
                      model_options=TINY_OPTIONS["unet"]), progress=False)
    return root


def live_page(live_runs: Path, monkeypatch, uploads) -> AppTest:
    """The Live page after uploading ``uploads``: (name, bytes) pairs."""
    monkeypatch.chdir(live_runs.parent)
    monkeypatch.delenv("SEGCORE_RUNS", raising=False)
    app = AppTest.from_file(APP, default_timeout=120).run()
    app.switch_page("app_pages/live.py").run()
    app.file_uploader(key="live_upload").set_value([(name, data, "image/png") for name, data in uploads]).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


# ---- damaged files, in each place an image comes in ----

@pytest.mark.hardening(2, DAMAGED, DAMAGED_HANDLED)
@pytest.mark.parametrize("kind", KINDS)
def test_the_library_names_a_damaged_file(kind, tmp_path):
    path = tmp_path / ("photo.jpg" if "JPEG" in kind else "photo.png")
    path.write_bytes(damaged(kind))
    with pytest.raises(DatasetError) as error:
        read_image(path)
    assert str(error.value) == f"image at {path} {PROBLEM[kind]}; check or replace the file."


@pytest.mark.hardening(2, DAMAGED, DAMAGED_HANDLED)
@pytest.mark.parametrize("kind", KINDS)
def test_the_dataset_reader_names_the_image_id_and_path(kind, tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    listing = [{"id": 3, "file_name": "good.png", "height": 64, "width": 64},
               {"id": 7, "file_name": "bad.png", "height": 64, "width": 64}]
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(
        {"images": listing, "annotations": [], "categories": [{"id": 1, "name": "square"}]}))
    noise().save(tmp_path / "val" / "good.png")
    (tmp_path / "val" / "bad.png").write_bytes(damaged(kind))
    with pytest.raises(DatasetError) as error:
        dataset = CocoSegmentation(tmp_path, "val")
        assert dataset[0][0].shape == (3, 64, 64)  # the good image still reads
        dataset[1]
    message = str(error.value)
    assert "image 7" in message and str(tmp_path / "val" / "bad.png") in message and PROBLEM[kind] in message
    assert one_sentence(message)


@pytest.mark.hardening(2, DAMAGED, DAMAGED_HANDLED)
@pytest.mark.parametrize("kind", KINDS)
def test_predict_names_the_file_in_one_line(kind, unet_checkpoint, tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    noise().save(good)
    bad.write_bytes(damaged(kind))
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(unet_checkpoint), str(good), str(bad), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error == f"error: image at {bad} {PROBLEM[kind]}; check or replace the file.\n"


@pytest.mark.hardening(2, DAMAGED, DAMAGED_HANDLED)
@pytest.mark.parametrize("kind", KINDS)
def test_the_live_page_names_the_upload(kind, live_runs, monkeypatch):
    app = live_page(live_runs, monkeypatch, [("holiday.png", damaged(kind)), ("good.png", encoded(noise(), "PNG"))])
    assert [e.value for e in app.error] == [f"uploaded file holiday.png {PROBLEM[kind]}; upload a PNG, JPEG or "
                                            f"TIFF image."]
    assert app.get("image")  # the good upload is still segmented


# ---- the extension says one thing, the content another ----

WRONG_EXTENSION = "a wrong extension: PNG bytes named .jpg, text or EPS named .png"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n0 0 moveto 16 16 lineto stroke\nshowpage\n"


@pytest.mark.hardening(2, WRONG_EXTENSION, "read by content; a file that is no image segcore reads is refused")
def test_png_bytes_named_jpg_are_read_by_content(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(noise(8, 12), "PNG"))
    assert torch.equal(read_image(path), torch.from_numpy(np.array(noise(8, 12))).permute(2, 0, 1))
    assert live.decode_upload("photo.jpg", path.read_bytes()).shape == (3, 8, 12)


def test_pil_would_open_an_eps_file_named_png():
    # EPS is decoded by handing the file to Ghostscript: more code than segcore wants to run on an upload
    assert Image.open(io.BytesIO(EPS)).format == "EPS"


@pytest.mark.hardening(2, WRONG_EXTENSION, "read by content; a file that is no image segcore reads is refused")
@pytest.mark.parametrize("content", [b"name,score\ncat,0.9\n", EPS], ids=["text", "eps"])
def test_a_file_that_is_no_image_segcore_reads_is_refused(content, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="^image at .*photo.png cannot be read as an image; check or replace"):
        read_image(path)
    with pytest.raises(SegcoreError, match="^uploaded file photo.png cannot be read as an image; upload a PNG"):
        live.decode_upload("photo.png", content)


# ---- decompression bombs ----

@pytest.fixture(scope="module")
def bomb() -> bytes:
    """100 megapixels of black in a 100 kB PNG: between PIL's limit (89 MP) and twice it."""
    return png_declaring(10_000, 10_000)


def test_pil_alone_decodes_the_bomb_with_only_a_warning(bomb):
    with pytest.warns(Image.DecompressionBombWarning):
        opened = Image.open(io.BytesIO(bomb))
    with opened:
        opened.load()
        assert opened.size == (10_000, 10_000) and len(bomb) < 200_000  # 100 MB of pixels from 140 kB
    # and a file just over segcore's limit does not even warn
    assert Image.open(io.BytesIO(png_declaring(8193, 8192, pixels=False))).size == (8193, 8192)


def limit_message(subject: str, size: str | None) -> str:
    stated = f"is {size} pixels, more" if size else "declares more pixels"
    return (f"{subject} {stated} than segcore's limit of 67,108,864 pixels (8192x8192) for one image, set to bound "
            f"the memory decoding takes; scale it down below the limit and try again.")


@pytest.mark.hardening(2, BOMB, BOMB_HANDLED)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, as it opens the file
@pytest.mark.parametrize("declared", ["10000x10000 with its pixels", "30000x30000 header", "8193x8192 header"])
def test_the_library_refuses_a_bomb_before_decoding(declared, bomb, monkeypatch):
    size, kind = declared.split(" ", 1)
    width, height = map(int, size.split("x"))
    data = bomb if kind == "with its pixels" else png_declaring(width, height, pixels=False)

    def decode(image):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)  # where every file format decodes its pixels
    with pytest.raises(DatasetError) as error:
        read_image(io.BytesIO(data), what="bomb.png")
    # had a header-only file been decoded, it would have failed as truncated, not over the limit; past twice
    # its own limit PIL refuses the file as it opens it, before segcore can read the size
    assert str(error.value) == limit_message("bomb.png", None if width == 30_000 else size)


@pytest.mark.hardening(2, BOMB, BOMB_HANDLED)
def test_the_limit_holds_when_other_code_turns_pils_off(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(DatasetError, match="is 30000x30000 pixels, more than segcore's limit"):
        read_image(io.BytesIO(png_declaring(30_000, 30_000, pixels=False)), what="bomb.png")


@pytest.mark.hardening(2, BOMB, BOMB_HANDLED)
@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_the_limit_holds_when_pils_warning_is_an_error(bomb):
    with pytest.raises(DatasetError) as error:
        read_image(io.BytesIO(bomb), what="bomb.png")
    assert str(error.value) == limit_message("bomb.png", None)


def test_the_limit_is_segcores_own_number(monkeypatch):
    assert MAX_PIXELS == 8192 * 8192 < Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(images, "MAX_PIXELS", 64 * 64)
    assert read_image(io.BytesIO(encoded(noise(64, 64), "PNG"))).shape == (3, 64, 64)
    with pytest.raises(DatasetError, match="is 65x64 pixels"):
        read_image(io.BytesIO(encoded(noise(64, 65), "PNG")))


@pytest.mark.hardening(2, BOMB, BOMB_HANDLED)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_predict_refuses_a_bomb_in_one_line(bomb, unet_checkpoint, tmp_path, capsys):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    assert main(["predict", "--weights", str(unet_checkpoint), str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {limit_message(f'image at {path}', '10000x10000')}\n"


@pytest.mark.hardening(2, "an image too large for pycocotools to encode its masks (4097x4096) given to predict",
                       "refused before the model runs, naming the file, its size and the limit")
def test_predict_refuses_an_image_whose_masks_pycocotools_cannot_encode(unet_checkpoint, tmp_path, capsys):
    path = tmp_path / "large.png"
    Image.new("L", (4097, 4096)).save(path)
    assert main(["predict", "--weights", str(unet_checkpoint), str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"error: {path} is 4097x4096 pixels; its masks are written as COCO RLE at full "
                                       "size, which pycocotools can do for at most 16,777,215 pixels (about "
                                       "4096x4096), so scale it down or tile it.\n")
    assert not (tmp_path / "out" / "predictions.json").exists()


@pytest.mark.hardening(2, BOMB, BOMB_HANDLED)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_live_page_refuses_a_bomb(bomb, live_runs, monkeypatch):
    app = live_page(live_runs, monkeypatch, [("bomb.png", bomb)])
    assert [e.value for e in app.error] == [limit_message("uploaded file bomb.png", "10000x10000")]


# ---- colour modes and bit depths ----

def cmyk_cyan(format: str) -> bytes:
    return encoded(Image.new("CMYK", (4, 3), (255, 0, 0, 0)), format)


def sixteen_bit() -> bytes:
    return encoded(Image.fromarray(np.array([[0, 257, 32768, 65535]], dtype=np.uint16)), "PNG")


def palette_with_transparency() -> bytes:
    image = Image.new("P", (4, 1), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.putpixel((0, 0), 0)
    return encoded(image, "PNG", transparency=1)  # colour 1 is fully transparent


@pytest.mark.hardening(2, "16-bit, grey, RGBA, CMYK and palette images", "read as 8-bit RGB with the right colours")
@pytest.mark.parametrize("data, first_row", [pytest.param(data, row, id=name) for name, data, row in [
    ("16-bit grey PNG", sixteen_bit(), [[0] * 3, [1] * 3, [128] * 3, [255] * 3]),  # scaled, not clipped at 255
    ("grey PNG", encoded(Image.new("L", (2, 1), 77), "PNG"), [[77] * 3] * 2),
    ("RGBA PNG", encoded(Image.new("RGBA", (2, 1), (10, 20, 30, 0)), "PNG"), [[10, 20, 30]] * 2),  # alpha dropped
    ("CMYK JPEG", cmyk_cyan("JPEG"), [[0, 255, 255]] * 4),
    ("CMYK TIFF", cmyk_cyan("TIFF"), [[0, 255, 255]] * 4),
    ("palette PNG with transparency", palette_with_transparency(), [[0, 0, 0]] + [[200, 100, 50]] * 3),
]])
def test_every_colour_mode_becomes_8_bit_rgb(data, first_row):
    image = read_image(io.BytesIO(data))
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert image[:, 0].T.tolist() == first_row


# ---- EXIF orientation ----

@pytest.mark.hardening(2, "EXIF orientation 3, 6 and 8 in a JPEG", "rotated upright as the EXIF says")
@pytest.mark.parametrize("orientation, corner", [(3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation_is_applied(orientation, corner):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:4, :4] = (255, 0, 0)  # a red top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = read_image(io.BytesIO(encoded(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)))
    assert image.shape == ((3, 20, 40) if orientation == 3 else (3, 40, 20))
    red = image[:, corner[0], corner[1]].tolist()
    assert red[0] > 200 and max(red[1:]) < 50 and int(image[0, 0, 0]) < 50  # the red corner has moved there


# ---- 1x1 images, one-pixel strips and very large photos ----

def untrained(name: str) -> LoadedModel:
    torch.manual_seed(0)
    options = {**TINY_OPTIONS[name], **({"attention": "spatial"} if name == "maskrcnn" else {})}
    model = create_model(name, num_classes=3, **options).eval()
    return LoadedModel(model, name, model_options(name, **options), ["square", "disc"], [1, 2], "untrained")


@pytest.mark.hardening(2, "1x1 images and one-pixel-wide strips", "every model answers at the image's size")
@pytest.mark.parametrize("size", [(1, 1), (1, 1500), (1500, 1)], ids=["1x1", "1x1500", "1500x1"])
@pytest.mark.parametrize("name", list(MODELS))
def test_tiny_and_thin_images_go_through_every_model(name, size):
    # a strip more than max_size times longer than wide shrank to zero pixels in torchvision's Mask R-CNN
    height, width = size
    image = live.decode_upload("dot.png", encoded(noise(height, width), "PNG"))
    fitted, _ = live.fit(image)
    loaded = untrained(name)
    prediction = live.segment(loaded, fitted).prediction
    assert prediction.semantic.shape == fitted.shape[-2:] and prediction.masks.shape[-2:] == fitted.shape[-2:]
    assert overlay(fitted, prediction, loaded.class_names).shape == fitted.shape
    assert live.semantic_picture(fitted, prediction, 2).shape == fitted.shape
    assert Image.open(io.BytesIO(live.masks_png(prediction))).size == fitted.shape[-2:][::-1]
    coco = json.loads(live.coco_json(prediction, loaded, "dot.png", fitted.shape[-2:]))
    assert coco["images"][0]["width"] == fitted.shape[-1] == min(width, live.MAX_SIDE)
    live.instances_table(prediction, loaded.class_names)
    if prediction.attention is not None and len(prediction):
        assert live.attention_overlay(fitted, prediction.attention[0]).shape == fitted.shape


@pytest.mark.hardening(2, "1x1 images and one-pixel-wide strips", "every model answers at the image's size")
def test_a_1x1_upload_on_the_live_page(live_runs, monkeypatch):
    app = live_page(live_runs, monkeypatch, [("dot.png", encoded(noise(1, 1), "PNG"))])
    assert not app.error and app.get("image")
    assert [b.label for b in app.get("download_button")] == ["Masks (PNG)", "Predictions (COCO JSON)"]


def peak_memory_growth(step) -> float:
    """Bytes by which the process's peak resident memory grows while ``step()`` runs (Linux)."""
    clear_refs = Path("/proc/self/clear_refs")
    try:
        clear_refs.write_text("5")  # resets the peak (VmHWM) to the current resident size
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")

    def status(key: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024

    before = status("VmRSS:")
    step()
    return status("VmHWM:") - before


VERY_LARGE = "a very large photo under the limit (6000x4000)"


@pytest.mark.hardening(2, VERY_LARGE, "scaled down to 1024 px for the models, with a notice; about 10 bytes a pixel")
def test_a_very_large_image_is_scaled_down_in_bounded_memory():
    data = png_declaring(6000, 4000, rgb=True)
    results = []
    grown = peak_memory_growth(lambda: results.append(live.fit(live.decode_upload("large.png", data))))
    (fitted, scale), = results
    assert fitted.shape == (3, 683, 1024) and scale == pytest.approx(1024 / 6000)
    # about 10 bytes a pixel (PIL's 4-byte RGB, its bytes, the tensor); a float copy would add 12 more
    assert grown < 16 * 6000 * 4000, f"{grown / 2**20:.0f} MiB to decode and scale 24 megapixels"


@pytest.mark.hardening(2, VERY_LARGE, "scaled down to 1024 px for the models, with a notice; about 10 bytes a pixel")
def test_the_live_page_says_a_large_image_was_scaled_down(live_runs, monkeypatch):
    app = live_page(live_runs, monkeypatch, [("large.png", png_declaring(6000, 4000))])
    assert not app.error
    assert [i.value for i in app.info] == ["large.png is 6000×4000 pixels; it was scaled down to 1024×683 for "
                                           "the models."]


MANY = "many small uploads that decode to large images (64 KB PNGs of 8192x8192)"


@pytest.mark.hardening(5, MANY, "decoded one at a time and kept scaled to 1024 px: a session holds about one "
                                "decoded image, whatever the number of uploads; at most 8 segmented at once")
def test_many_uploads_are_held_scaled_one_decoded_at_a_time(live_runs, monkeypatch):
    """A session's memory does not grow with its uploads: no full-size image outlives its decoding, and the
    page's peak memory over six uploads of 8192 x 8192 stays within what decoding one takes (about 10 bytes a
    pixel, bounded at 16 as above), where holding the six would add 1.2 GB."""
    import weakref

    decoded, alive_at_decode = [], []
    decode = live.decode_upload

    def counting(name, data):
        alive_at_decode.append(sum(ref() is not None for ref in decoded))
        image = decode(name, data)
        decoded.append(weakref.ref(image))
        return image

    monkeypatch.setattr(live, "decode_upload", counting)
    data = png_declaring(8192, 8192, rgb=True)
    assert len(data) < 300_000
    uploads = [(f"big{i}.png", data) for i in range(6)]
    app = None

    def show():
        nonlocal app
        app = live_page(live_runs, monkeypatch, uploads)

    grown = peak_memory_growth(show)
    assert not app.error and len(app.subheader) == 6
    assert alive_at_decode == [0] * 6, "a full-size image was still held when the next upload was decoded"
    one = 3 * 8192 * 8192
    print(f"peak memory grew by {grown / 2**20:.0f} MiB for six uploads of {one / 2**20:.0f} MiB each")
    assert grown < 16 * 8192 * 8192, f"{grown / 2**20:.0f} MiB for six uploads of {one / 2**20:.0f} MiB each"


@pytest.mark.hardening(5, MANY, "decoded one at a time and kept scaled to 1024 px: a session holds about one "
                                "decoded image, whatever the number of uploads; at most 8 segmented at once")
def test_more_uploads_than_the_page_segments_at_once_are_named(live_runs, monkeypatch):
    small = encoded(noise(8, 8), "PNG")
    app = live_page(live_runs, monkeypatch, [(f"small{i}.png", small) for i in range(live.MAX_IMAGES + 2)])
    assert len(app.subheader) == live.MAX_IMAGES
    assert [w.value for w in app.warning] == [f"{live.MAX_IMAGES + 2} images are uploaded; the first "
                                              f"{live.MAX_IMAGES} are segmented. Remove some to see the others."]


# ---- uploads over the size limit (section 5) ----

UPLOAD = "an upload over the size limit (50 MB)"
UPLOAD_HANDLED = "refused before decoding with one sentence: the file, its size, the limit"


def padded_png(size: int) -> bytes:
    """A valid 8x8 PNG padded with bytes after its end to ``size`` bytes; PIL reads it all the same."""
    data = encoded(noise(8, 8), "PNG")
    return data + bytes(size - len(data))


def upload_message(name: str, megabytes: str) -> str:
    return (f"uploaded file {name} is {megabytes} MB, over the 50 MB limit for one upload; upload a smaller file, "
            f"such as a JPEG or the image scaled down.")


@pytest.mark.hardening(5, UPLOAD, UPLOAD_HANDLED)
def test_an_upload_over_the_limit_is_refused_before_decoding():
    assert live.MAX_UPLOAD_BYTES == 50 * 1024 * 1024
    assert live.decode_upload("at-limit.png", padded_png(live.MAX_UPLOAD_BYTES)).shape == (3, 8, 8)
    with pytest.raises(SegcoreError) as error:
        live.decode_upload("holiday.png", padded_png(live.MAX_UPLOAD_BYTES + 1))  # a valid image, one byte over
    assert str(error.value) == upload_message("holiday.png", "50.1")


@pytest.mark.hardening(5, UPLOAD, UPLOAD_HANDLED)
def test_the_live_page_refuses_an_upload_over_the_limit(live_runs, monkeypatch):
    app = live_page(live_runs, monkeypatch, [("holiday.png", padded_png(60 * 1024 * 1024))])
    assert [e.value for e in app.error] == [upload_message("holiday.png", "60.0")]
    # the browser is told the same limit, so it refuses a larger file before sending it
    assert app.file_uploader(key="live_upload").proto.max_upload_size_mb == live.MAX_UPLOAD_MB


def test_streamlits_server_limit_is_segcores():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == live.MAX_UPLOAD_MB


def test_a_fifo_named_as_an_image_is_refused_without_waiting(tmp_path):
    """A pipe would block the read forever: it is named and refused before it is opened."""
    import threading

    from segcore.errors import DatasetError

    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_image(fifo, what="image 3")
        except DatasetError as error:
            outcome["error"] = str(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO hangs"
    assert outcome["error"] == (f"image 3 at {fifo} is not a regular file (a pipe, socket or device); check or "
                                f"replace the file.")


@pytest.mark.parametrize("array, mode, words", [
    ((np.arange(64 * 64).reshape(64, 64) * 100_000).astype(np.int32), "I", "holds 32-bit integer pixels"),
    (np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32), "F", "holds floating-point pixels"),
])
def test_a_tiff_of_32_bit_pixels_is_refused_not_shown_white(tmp_path, array, mode, words):
    from segcore.errors import DatasetError

    path = tmp_path / "deep.tif"
    Image.fromarray(array, mode=mode).save(path)
    with pytest.raises(DatasetError, match=words):
        read_image(path)


def test_a_16_bit_tiff_is_still_scaled_to_8_bits(tmp_path):
    path = tmp_path / "sixteen.tif"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    assert read_image(path).unique().tolist() == [255]
