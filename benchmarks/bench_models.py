"""Time TileSAM's model layer: the image encoder, and one click to a full-resolution mask.

For each architecture this measures

* ``embed``: :meth:`SamModel.embed` of a 1024 x 1024 RGB uint8 image (the user's path:
  normalisation, encoder; on a GPU with TileSAM's bfloat16 autocast), and ``encoder``: the
  image encoder alone on the same preprocessed input in float32;
* ``click``: :meth:`SamModel.predict` for one positive point (multimask; ``predict``
  alone: the decoder short of its output upscaling, whatever the mask) plus
  ``result.mask()``, on original images of 1024 x 1024 and 2000 x 1500 pixels, over many
  clicks at different places; ``all masks``: the same with ``result.masks`` (all three
  masks at full resolution, which is what the official ``SamPredictor.predict`` returns).
* ``object clicks`` (models with real weights): one click at the centre of each of 40
  nuclei of the sample image tiled 4 x 5 (1024 x 1280 pixels), then ``result.mask()``.

Weights are random, except ``tiny``, which uses the bundled weights when
``tilesam.load_model("tiny")`` finds them. A random decoder's masks cover a random half of
the image, the worst case for TileSAM's click, which upscales the decoder's output only
around the prompted object ("mask px" is that fraction); the object clicks show the common
case.

With ``--official`` and the ``segment_anything`` package installed (``pip install --no-deps
segment-anything``; it is not a TileSAM dependency), the official ViT models are timed on the
same inputs and weights in the same run, and the ratios ours / official are printed.

Examples
--------
    python benchmarks/bench_models.py --models vit_t tiny --repeats 2
    python benchmarks/bench_models.py --models vit_b --official --json bench.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

import tilesam
from tilesam.decode.embedding import ImageEmbedding
from tilesam.evaluate.simulated_prompts import center_point
from tilesam.models.loading import pick_device
from tilesam.models.preprocess import prepare_image, resized_shape
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam_model import SamModel

ORIGINAL_SIZES = ((1024, 1024), (2000, 1500))
SAMPLE_DATA = Path(__file__).parents[1] / "sample_data"
OFFICIAL_NAMES = ("vit_b", "vit_l", "vit_h")  # what segment_anything 1.0 can build


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["vit_b", "vit_t", "tiny"],
        choices=sorted(ARCHITECTURES),
        help="architectures to time",
    )
    parser.add_argument("--repeats", type=int, default=5, help="encoder runs per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--clicks", type=int, default=50, help="clicks per image size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: fastest)")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument(
        "--official",
        action="store_true",
        help="also time the official segment_anything ViT (if installed)",
    )
    return parser.parse_args(argv)


# --- timing -------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_call_seconds(fn: Callable[[Any], Any], args: list[Any], device: torch.device) -> float:
    """Median time of ``fn(a)`` over the ``args`` (one call each, after one warm-up)."""
    fn(args[0])
    times = []
    for arg in args:
        _sync(device)
        start = time.perf_counter()
        fn(arg)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- models and inputs --------------------------------------------------------------------


def build_model(name: str, device: torch.device) -> tuple[SamModel, str]:
    """Our model ``name`` and a word on its weights."""
    if name == "tiny":
        try:
            return tilesam.load_model("tiny", device=device), "bundled"
        except tilesam.TileSAMError:
            pass  # not trained and shipped yet: random weights time the same
    torch.manual_seed(0)
    arch = ARCHITECTURES[name]
    return SamModel(build_sam(arch), name=name, architecture=arch, device=device), "random"


def synthetic_image(size: int = 1024, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image with discs on a gradient: some structure to segment."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    image = 60 + 60 * (xx / size)[..., None] * np.ones(3, np.float32)
    for _ in range(40):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(20, 120)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def click_points(size: tuple[int, int], n: int, seed: int = 1) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0, size[0]), rng.uniform(0, size[1])) for _ in range(n)]


def embedding_for(features: torch.Tensor, size: tuple[int, int], side: int) -> ImageEmbedding:
    """An embedding as if of an image of ``size``: decoder cost does not depend on content."""
    return ImageEmbedding(features, original_size=size, input_size=resized_shape(size, side))


# --- the official implementation ----------------------------------------------------------


def load_official() -> types.ModuleType | None:
    """``segment_anything.build_sam`` without running the package's ``__init__``, or None.

    The package ``__init__`` imports the predictor, whose ``utils/transforms.py`` imports
    torchvision, which TileSAM does not use (and whose wheels pull another torch). The model
    code needs none of it, so a bare stand-in for the package is registered, pointing at
    the installed files, and only ``build_sam`` and ``modeling`` are imported.
    """
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "segment_anything" not in sys.modules:
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.build_sam")


def build_official(build: types.ModuleType, name: str, ours: SamModel) -> torch.nn.Module:
    """The official model ``name`` holding our model's weights (same state dict layout)."""
    sam = build.sam_model_registry[name](checkpoint=None)
    sam.load_state_dict(ours.sam.state_dict())
    return sam.to(ours.device).eval()


@torch.inference_mode()
def official_click(sam, features, point_yx, input_size, original_size) -> np.ndarray:
    """What ``SamPredictor.predict`` does for one point: prompt encoder, decoder, all masks."""
    scale = (input_size[1] / original_size[1], input_size[0] / original_size[0])
    coords = np.array([[point_yx[1] * scale[0], point_yx[0] * scale[1]]], dtype=np.float32)
    points = (
        torch.as_tensor(coords, device=features.device)[None],
        torch.ones((1, 1), dtype=torch.int, device=features.device),
    )
    sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
    low_res, iou = sam.mask_decoder(
        image_embeddings=features,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    masks = sam.postprocess_masks(low_res, input_size, original_size) > sam.mask_threshold
    return masks[0].cpu().numpy()


# --- measurements -------------------------------------------------------------------------


def time_encoders(model, official, image, args, device) -> tuple[dict, torch.Tensor]:
    """Encoder timings and the features of ``image`` (for the clicks)."""
    pixels, _ = prepare_image(image, model.image_size)
    x = model.sam.preprocess(pixels.to(device))

    def ours() -> torch.Tensor:
        with torch.inference_mode():
            return model.sam.image_encoder(x)

    out = {
        "embed_s": median_seconds(lambda: model.embed(image), device, args.repeats, args.warmup),
        "encoder_s": median_seconds(ours, device, args.repeats, args.warmup),
    }
    if official is not None:

        def theirs() -> torch.Tensor:
            with torch.inference_mode():
                return official.image_encoder(x)

        out["official_encoder_s"] = median_seconds(theirs, device, args.repeats, args.warmup)
        out["encoder_ratio"] = out["encoder_s"] / out["official_encoder_s"]
    return out, model.embed(image).features


def time_clicks(model, official, features, size, args, device) -> dict:
    """Click-to-mask timings on an original image of ``size``."""
    emb = embedding_for(features, size, model.image_size)
    points = click_points(size, args.clicks)

    def predict(p):
        return model.predict(emb, points=[p], labels=[1])

    def best(p):
        return predict(p).mask()

    def all_masks(p):
        return predict(p).masks

    out = {
        "predict_ms": 1e3 * per_call_seconds(predict, points, device),
        "click_mask_ms": 1e3 * per_call_seconds(best, points, device),
        "click_all_masks_ms": 1e3 * per_call_seconds(all_masks, points, device),
        "mask_fraction": float(np.mean([best(p).mean() for p in points[:10]])),
    }
    if official is not None:
        feats = features.to(device)

        def theirs(p):
            return official_click(official, feats, p, emb.input_size, size)

        out["official_click_ms"] = 1e3 * per_call_seconds(theirs, points, device)
        out["click_mask_ratio"] = out["click_mask_ms"] / out["official_click_ms"]
        out["click_all_masks_ratio"] = out["click_all_masks_ms"] / out["official_click_ms"]
        out["official_mask_agreement"] = float(np.mean(all_masks(points[0]) == theirs(points[0])))
    return out


def time_object_clicks(model: SamModel, device: torch.device, n: int = 40) -> dict:
    """Clicks at object centres of the sample nuclei tiled 4 x 5."""
    image = np.tile(tifffile.imread(SAMPLE_DATA / "nuclei.tif"), (4, 5))
    labels = tifffile.imread(SAMPLE_DATA / "nuclei_labels.tif")
    emb = model.embed(image)
    ids = [i for i in np.unique(labels) if i][:n]
    points = [center_point(labels == i) for i in ids]

    def best(p):
        return model.predict(emb, points=[p], labels=[1]).mask()

    return {
        "image": f"{image.shape[0]}x{image.shape[1]}",
        "object_click_ms": 1e3 * per_call_seconds(best, points, device),
        "mask_fraction": float(np.mean([best(p).mean() for p in points[:10]])),
    }


def bench_model(name: str, args, device, build_module) -> dict:
    model, weights = build_model(name, device)
    official = None
    if build_module is not None and name in OFFICIAL_NAMES:
        official = build_official(build_module, name, model)
    print(f"timing {name} ({weights} weights) ...", flush=True)
    encoders, features = time_encoders(model, official, synthetic_image(), args, device)
    clicks = {
        f"{h}x{w}": time_clicks(model, official, features, (h, w), args, device)
        for h, w in ORIGINAL_SIZES
    }
    if weights != "random":
        clicks["objects"] = time_object_clicks(model, device)
    params = sum(p.numel() for p in model.sam.parameters())
    return {"model": name, "weights": weights, "params": params, **encoders, "clicks": clicks}


# --- reporting ----------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_tables(results: list[dict]) -> None:
    print(
        f"\n{'model':7} {'weights':8} {'params':>8} {'embed s':>8} {'encoder s':>9} "
        f"{'official s':>10} {'ours/off':>8}"
    )
    for r in results:
        print(
            f"{r['model']:7} {r['weights']:8} {r['params'] / 1e6:7.1f}M {r['embed_s']:8.3f} "
            f"{r['encoder_s']:9.3f} {_fmt(r.get('official_encoder_s'), '10.3f'):>10} "
            f"{_fmt(r.get('encoder_ratio'), '8.2f'):>8}"
        )
    print(
        f"\n{'model':7} {'image':9} {'predict ms':>10} {'mask() ms':>9} {'masks ms':>9} "
        f"{'official ms':>11} {'mask()/off':>10} {'masks/off':>9} {'mask px':>7}"
    )
    for r in results:
        for size, c in r["clicks"].items():
            if size == "objects":
                print(
                    f"{r['model']:7} {'objects':9} {'-':>10} {c['object_click_ms']:9.1f} "
                    f"{'-':>9} {'-':>11} {'-':>10} {'-':>9} {c['mask_fraction']:7.1e}   "
                    f"(clicks on nuclei, {c['image']})"
                )
                continue
            print(
                f"{r['model']:7} {size:9} {c['predict_ms']:10.1f} {c['click_mask_ms']:9.1f} "
                f"{c['click_all_masks_ms']:9.1f} {_fmt(c.get('official_click_ms'), '11.1f'):>11} "
                f"{_fmt(c.get('click_mask_ratio'), '10.2f'):>10} "
                f"{_fmt(c.get('click_all_masks_ratio'), '9.2f'):>9} {c['mask_fraction']:7.3f}"
            )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    build_module = load_official() if args.official else None
    if args.official and build_module is None:
        print("segment_anything is not installed: timing TileSAM only.")
    results = [bench_model(name, args, device, build_module) for name in args.models]
    report = {"machine": machine_info(device), "args": vars(args), "results": results}
    print_tables(results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
