"""SAM 2.1: TileSAM beside the official ``sam2`` package, same random weights, same threads.

Three measurements (issue 28's numbers), each side in its own process, run alternately:

- ``propagate``: memory propagation per slice, ``sam2.1_hiera_tiny`` at full size (1024),
  one click on frame 0 of a short volume (``--frames``, default 12) of JPEG frames, then
  forward to the end. Ours: :class:`~tilesam.models.sam2_tracker.Sam2Tracker` steps on
  embeddings computed first (the encoder excluded, as a cache gives them). Official:
  ``SAM2VideoPredictor`` (``init_state`` on the frame folder, ``add_new_points_or_box``,
  ``propagate_in_video``) after every frame's features were put in its feature cache (the
  encoder excluded), and once more from a fresh state as it runs by default (its encoder
  on every frame). Both also report their encoder time per frame, and the low-res logits of
  every frame are compared (the outputs must be the same).
- ``rss``: resident memory (``VmRSS``) along a 300-slice stack at 512 input (``--rss-size``;
  MedSAM2's size; 1024 costs ~5 s a slice on one thread): ours with its bounded bank, the
  official predictor with its state that keeps every frame. Each side tracks one frame's
  features over and over (the official encoder is called once and its output reused: the
  time and memory of the tracking are what is measured; the official ``init_state`` also
  holds every frame as float32 pixels, reported separately).
- ``encoder``: image encoder per 1024 x 1024 input, ``sam2.1_hiera_tiny`` and
  ``sam2.1_hiera_base_plus``: ``Sam2Model._embeddings`` (normalisation, Hiera, FPN neck,
  ``conv_s0`` / ``conv_s1``) against the official ``SAM2Base.forward_image`` (the same; the
  official input comes normalised from its loader), median of the rounds.

Ours computes in float32 by default (``--precision``), as the official code does on a CPU;
``bfloat16`` or ``auto`` (TileSAM's default: bfloat16 on a GPU or an AMX CPU, where the
tracker's products run under bfloat16 autocast too; :mod:`tilesam.models.precision`)
measure it as users get it.

The random weights are the official model's initialisation (``build_sam2(config,
ckpt_path=None)``, seeded), saved as ``{"model": state_dict}`` (the official checkpoint
format) and loaded by ``tilesam.load_model(checkpoint=...)``: timing does not depend on the
values. The official side runs in a separate Python (``--official-python`` or
``$TILESAM_OFFICIAL_PYTHON``: a venv with ``pip install sam2`` (1.1.0; its CUDA extension is
not needed); without one those columns are skipped with a note). That process never imports
``tilesam``: this file is its script, and its official functions import ``sam2`` only.

Run (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_sam2_vs_official.py all \\
        --official-python /tmp/venv-official/bin/python --threads 1 \\
        --json /tmp/work/sam2_vs_official.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
}
CLICK = (0.45, 0.55)  # (y, x) of the click, as fractions of the frame


# ---------------------------------------------------------------------------------------
# Helpers shared by both sides (numpy and the standard library only)


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux ``/proc``; ``resource`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# What the workers time: "cpu" (this process's CPU time, the default: on a shared machine
# it leaves out the waits for a core that other processes cause) or "wall".
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCKS["cpu"]


def _now() -> float:
    return _clock()


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def frame_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem))


def read_frame(path: Path, size: int) -> np.ndarray:
    """A frame as the official loader reads it: RGB, PIL's default resize to ``size``."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size)))


def pixels(frame: np.ndarray):
    import torch

    return torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float()


# ---------------------------------------------------------------------------------------
# The official side (runs under --official-python; imports sam2, never tilesam)


def _official_overrides(image_size: int) -> list[str]:
    return [] if image_size == 1024 else [f"++model.image_size={image_size}"]


def official_checkpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the official model with its own random initialisation and save it."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(spec["seed"])
    model = build_sam2(
        CONFIGS[spec["model"]], ckpt_path=None, device="cpu",
        hydra_overrides_extra=_official_overrides(spec.get("image_size", 1024)),
    )  # fmt: skip
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"model": state}, spec["out"])
    return {"keys": len(state), "params": sum(v.numel() for v in state.values())}


def _official_predictor(spec: dict[str, Any]):
    from sam2.build_sam import build_sam2_video_predictor

    return build_sam2_video_predictor(
        CONFIGS[spec["model"]], ckpt_path=spec["checkpoint"], device="cpu",
        hydra_overrides_extra=_official_overrides(spec.get("image_size", 1024)),
    )  # fmt: skip


def _official_click(spec: dict[str, Any], size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = CLICK
    return np.array([[x * size, y * size]], np.float32), np.array([1], np.int32)


def official_propagate(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    set_threads(spec["threads"])
    predictor = _official_predictor(spec)
    frames_dir = spec["frames"]
    n = len(frame_paths(Path(frames_dir)))
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        for cached in (True, False):
            state = predictor.init_state(frames_dir)
            encoder_ms = []
            if cached:
                # Every frame's features into the predictor's own feature cache (it keeps
                # only the last one by default), so that propagation skips the encoder.
                features = dict(state["cached_features"])
                for t in range(n):
                    state["cached_features"] = {}
                    start = _now()
                    predictor._get_image_feature(state, t, 1)
                    encoder_ms.append((_now() - start) * 1000)
                    features.update(state["cached_features"])
                state["cached_features"] = features
            size = state["video_width"]
            points, labels = _official_click(spec, size)
            start = _now()
            predictor.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
            annotate_ms = (_now() - start) * 1000
            step_ms = []
            iterator = predictor.propagate_in_video(state)
            start = _now()
            for _frame, _ids, _masks in iterator:
                step_ms.append((_now() - start) * 1000)
                start = _now()
            key = "cached" if cached else "uncached"
            out[key] = {
                "encoder_ms": encoder_ms,
                "annotate_ms": annotate_ms,
                "first_yield_ms": step_ms[0],  # the prompted frame (preflight)
                "step_ms": step_ms[1:],  # frames 1 .. n-1
            }
            if cached:
                outputs = state["output_dict_per_obj"][0]
                low = [outputs["cond_frame_outputs"][0]["pred_masks"]]
                low += [outputs["non_cond_frame_outputs"][t]["pred_masks"] for t in range(1, n)]
                np.save(spec["logits_out"], torch.cat(low)[:, 0].float().numpy())
            del state
            gc.collect()
    return out


def official_rss(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    set_threads(spec["threads"])
    predictor = _official_predictor(spec)
    original = predictor.forward_image
    encoded: list[Any] = []

    def forward_image_once(image):  # the first frame's features, reused on every frame
        if not encoded:
            encoded.append(original(image))
        return encoded[0]

    predictor.forward_image = forward_image_once
    checkpoints = set(spec["at"])
    out: dict[str, Any] = {"rss_start_mib": rss_mib()}
    with torch.inference_mode():
        state = predictor.init_state(spec["frames"])
        out["rss_after_init_mib"] = rss_mib()
        out["frames_pixels_mib"] = state["images"].numel() * 4 / 2**20
        points, labels = _official_click(spec, state["video_width"])
        predictor.add_new_points_or_box(state, 0, 1, points=points, labels=labels)
        rss, held, step_ms, logits = {}, {}, [], {}
        start = _now()
        for frame, _ids, _masks in predictor.propagate_in_video(state):
            step_ms.append((_now() - start) * 1000)
            tracked = frame + 1  # frames done, the prompted one included
            if tracked in checkpoints:
                rss[tracked] = rss_mib()
                held[tracked] = _tensor_mib(state["output_dict_per_obj"])
                key = "cond_frame_outputs" if frame == 0 else "non_cond_frame_outputs"
                pred = state["output_dict_per_obj"][0][key][frame]["pred_masks"]
                logits[tracked] = pred[0, 0].float().numpy()
            start = _now()
    np.savez(spec["logits_out"], **{str(k): v for k, v in logits.items()})
    out.update(rss_mib_at=rss, state_mib_at=held, step_ms=step_ms[1:])
    return out


def _tensor_mib(obj: Any, seen: set[int] | None = None) -> float:
    """MiB of the distinct tensors reachable through dicts / lists in `obj`."""
    import torch

    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0.0
        seen.add(key)
        return obj.untyped_storage().nbytes() / 2**20
    if isinstance(obj, dict):
        return sum(_tensor_mib(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_mib(v, seen) for v in obj)
    return 0.0


def official_encoder(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from sam2.build_sam import build_sam2

    set_threads(spec["threads"])
    model = build_sam2(CONFIGS[spec["model"]], ckpt_path=spec["checkpoint"], device="cpu")
    frame = _input_image(spec["size"])
    # As the official loader normalises it (0..1, ImageNet mean / std).
    x = pixels(frame) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    times = []
    with torch.inference_mode():
        for _ in range(spec["reps"] + 1):
            start = _now()
            out = model.forward_image(x)
            times.append((_now() - start) * 1000)
    if spec.get("features_out"):
        embedding = out["backbone_fpn"][-1] + model.no_mem_embed.detach().view(1, -1, 1, 1)
        np.savez(
            spec["features_out"], embedding=embedding.numpy(),
            s0=out["backbone_fpn"][0].numpy(), s1=out["backbone_fpn"][1].numpy(),
        )  # fmt: skip
    return {"warmup_ms": times[0], "ms": times[1:], "torch": torch.__version__}


def _input_image(size: int) -> np.ndarray:
    """The encoder's input: a seeded smooth random RGB image (the same on both sides)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size // 16, size // 16, 3)).astype(np.float32)
    image = np.kron(small, np.ones((16, 16, 1), np.float32))
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Our side (runs under this venv's Python)


def _our_model(spec: dict[str, Any]):
    import dataclasses

    import tilesam

    size = spec.get("image_size", 1024)
    if size == 1024:
        return tilesam.load_model(
            checkpoint=spec["checkpoint"], device="cpu", precision=spec["precision"]
        )
    # A SAM 2.1 input other than 1024 (MedSAM2's 512) is not in the registry: built here.
    from tilesam.models.checkpoint import infer_architecture, read_checkpoint
    from tilesam.models.registry import build_sam
    from tilesam.models.sam2 import fit_memory
    from tilesam.models.sam2_model import Sam2Model

    state = read_checkpoint(Path(spec["checkpoint"]))
    arch = dataclasses.replace(
        infer_architecture(state), image_size=size, embedding_size=size // 16
    )
    sam = build_sam(arch)
    fit_memory(sam, state)
    sam.load_state_dict(state)
    name = f"{spec['model']} at {size}"
    return Sam2Model(sam, name=name, architecture=arch, device="cpu", precision=spec["precision"])


def ours_propagate(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from tilesam.models.sam2_tracker import Sam2Tracker

    set_threads(spec["threads"])
    model = _our_model(spec)
    paths = frame_paths(Path(spec["frames"]))
    size = model.image_size
    encoder_ms, embeddings = [], []
    with torch.inference_mode():
        for path in paths:
            frame = read_frame(path, size)
            start = _now()
            embeddings.append(model._embeddings(pixels(frame), [frame.shape[:2]])[0])
            encoder_ms.append((_now() - start) * 1000)
    tracker = Sam2Tracker(model, num_frames=len(paths))
    feats = [tracker.frame(e) for e in embeddings]
    track = tracker.new_track()
    y, x = CLICK
    start = _now()
    first = tracker.annotate(track, 0, feats[0], points=[(y * size, x * size)], labels=[1])
    annotate_ms = (_now() - start) * 1000
    steps, step_ms = [first], []
    for t in range(1, len(paths)):
        start = _now()
        step = tracker.step(track, t, feats[t])
        step.logits()  # at frame size, as the official predictor yields it
        step_ms.append((_now() - start) * 1000)
        steps.append(step)
    np.save(spec["logits_out"], np.stack([s.low_res_logits for s in steps]))
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cached": {"encoder_ms": encoder_ms, "annotate_ms": annotate_ms, "step_ms": step_ms},
        "bank_memories": len(track.bank),
    }


def ours_rss(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from tilesam.models.sam2_tracker import Sam2Tracker

    set_threads(spec["threads"])
    out: dict[str, Any] = {"rss_start_mib": rss_mib()}
    model = _our_model(spec)
    size = model.image_size
    frame = read_frame(frame_paths(Path(spec["frames"]))[0], size)
    with torch.inference_mode():
        embedding = model._embeddings(pixels(frame), [frame.shape[:2]])[0]
    n = spec["n"]
    tracker = Sam2Tracker(model, num_frames=n)
    feats = tracker.frame(embedding)  # one frame's features on every slice, as the official
    track = tracker.new_track()
    y, x = CLICK
    tracker.annotate(track, 0, feats, points=[(y * size, x * size)], labels=[1])
    out["rss_after_init_mib"] = rss_mib()
    checkpoints = set(spec["at"])
    rss, held, step_ms, logits = {}, {}, [], {}
    if 1 in checkpoints:
        rss[1], held[1] = rss_mib(), track.bank.nbytes / 2**20
        logits[1] = track.prompted[0].low_res_logits
    for t in range(1, n):
        start = _now()
        step = tracker.step(track, t, feats)
        step.logits()
        step_ms.append((_now() - start) * 1000)
        if t + 1 in checkpoints:
            rss[t + 1], held[t + 1] = rss_mib(), track.bank.nbytes / 2**20
            logits[t + 1] = step.low_res_logits
    np.savez(spec["logits_out"], **{str(k): v for k, v in logits.items()})
    out.update(rss_mib_at=rss, state_mib_at=held, step_ms=step_ms)
    return out


def ours_encoder(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    import tilesam

    set_threads(spec["threads"])
    model = tilesam.load_model(
        checkpoint=spec["checkpoint"], device="cpu", precision=spec["precision"]
    )
    x = pixels(_input_image(spec["size"]))
    size = (spec["size"], spec["size"])
    times = []
    with torch.inference_mode():
        for _ in range(spec["reps"] + 1):
            start = _now()
            emb = model._embeddings(x, [size])[0]
            times.append((_now() - start) * 1000)
    if spec.get("features_out"):
        s0, s1 = emb.high_res_features
        np.savez(spec["features_out"], embedding=emb.features.numpy(), s0=s0.numpy(),
                 s1=s1.numpy())  # fmt: skip
    return {"warmup_ms": times[0], "ms": times[1:], "torch": torch.__version__}


WORKERS = {
    "official_checkpoint": official_checkpoint,
    "official_propagate": official_propagate,
    "official_rss": official_rss,
    "official_encoder": official_encoder,
    "ours_propagate": ours_propagate,
    "ours_rss": ours_rss,
    "ours_encoder": ours_encoder,
}


def worker_main(name: str, spec_json: str, result: str) -> None:
    global _clock
    spec = json.loads(spec_json)
    _clock = CLOCKS[spec.get("clock", "cpu")]
    if name.startswith("official"):
        assert "tilesam" not in sys.modules
    out = WORKERS[name](spec)
    if name.startswith("official"):
        out["imported_tilesam"] = "tilesam" in sys.modules
    Path(result).write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------
# The orchestrator (this venv's Python; starts a process per measurement)


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        official = args.official_python or os.environ.get("TILESAM_OFFICIAL_PYTHON")
        self.official = official if official and Path(official).exists() else None
        if self.official is None:
            print(
                "note: no official sam2 Python (--official-python or $TILESAM_OFFICIAL_PYTHON); "
                "the official columns are skipped (ours run on the official random checkpoint "
                "when --workdir has it, else on their own random weights)",
                file=sys.stderr,
            )

    def run(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        python = self.official if name.startswith("official") else sys.executable
        env = dict(os.environ)
        threads = str(self.args.threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        env.pop("PYTHONPATH", None)
        spec = {
            "threads": self.args.threads,
            "clock": self.args.clock,
            "precision": self.args.precision,
            **spec,
        }
        with tempfile.NamedTemporaryFile(suffix=".json", dir=self.work, delete=False) as f:
            result = Path(f.name)
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "--worker",
            name,
            json.dumps(spec),
            str(result),
        ]
        started = time.perf_counter()
        # The official child starts outside the repository so that it cannot see tilesam.
        proc = subprocess.run(cmd, env=env, cwd=self.work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
        out = json.loads(result.read_text())
        out["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        result.unlink()
        print(
            f"  {name} {spec.get('model', '')}: {time.perf_counter() - started:.0f} s", flush=True
        )
        return out

    def checkpoint(self, model: str, image_size: int = 1024) -> Path:
        """The official model's random initialisation (seed 0), as an official checkpoint."""
        path = self.work / f"{model}_random_seed0_{image_size}.pt"
        if not path.exists():
            if self.official is None:
                return self._our_random_checkpoint(model, path)
            spec = {"model": model, "seed": 0, "out": str(path), "image_size": image_size}
            self.run("official_checkpoint", spec)
        return path

    def _our_random_checkpoint(self, model: str, path: Path) -> Path:
        import torch

        from tilesam.models.registry import ARCHITECTURES, build_sam

        torch.manual_seed(0)
        torch.save({"model": build_sam(ARCHITECTURES[model]).state_dict()}, path)
        return path

    def frames(self, n: int, size: int, tag: str) -> Path:
        """`n` JPEG frames (``00000.jpg`` ...): a bright disc moving on a textured ground."""
        from PIL import Image

        folder = self.work / f"frames_{tag}_{n}_{size}"
        if len(frame_paths(folder)) == n if folder.exists() else False:
            return folder
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(1)
        yy, xx = np.mgrid[:size, :size]
        ground = rng.normal(80, 20, (size, size, 3))
        for t in range(n):
            cy, cx = CLICK[0] * size, CLICK[1] * size + (t - n / 2) * size / 200
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 8) ** 2
            frame = np.where(disc[..., None], 200.0, ground) + rng.normal(0, 5, ground.shape)
            Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(
                folder / f"{t:05d}.jpg", quality=95
            )
        return folder


def _ms(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _compare(ours: np.ndarray, official: np.ndarray) -> dict[str, float]:
    return {
        "max_abs_diff": float(np.abs(ours - official).max()),
        "masks_agree": float(((ours > 0) == (official > 0)).mean()),
    }


def bench_propagate(runner: Runner) -> dict[str, Any]:
    args = runner.args
    model = "sam2.1_hiera_tiny"
    ckpt = runner.checkpoint(model)
    folder = runner.frames(args.frames, 1024, "prop")
    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "official": []}
    for r in range(args.rounds):
        spec = {"model": model, "checkpoint": str(ckpt), "frames": str(folder)}
        rounds["ours"].append(
            runner.run("ours_propagate", {**spec, "logits_out": str(runner.work / "ours_prop.npy")})
        )
        if runner.official:
            rounds["official"].append(
                runner.run(
                    "official_propagate",
                    {**spec, "logits_out": str(runner.work / "official_prop.npy")},
                )
            )
        print(f"  propagate round {r + 1} / {args.rounds} done", flush=True)
    full = slice(6, None)  # frames 7 ... : the bank holds the prompted frame and 6 recent
    result: dict[str, Any] = {"model": model, "frames": args.frames, "image_size": 1024}
    for side, runs in rounds.items():
        if not runs:
            continue
        for key in ("cached", "uncached"):
            if key not in runs[0]:
                continue
            steps = [run[key]["step_ms"] for run in runs]
            result[f"{side}_{key}"] = {
                "step_ms_all_frames": statistics.median(_ms(s) for s in steps),
                "step_ms_full_bank": statistics.median(_ms(s[full]) for s in steps),
                "step_ms_frame1": statistics.median(s[0] for s in steps),
                "encoder_ms": statistics.median(_ms(run[key]["encoder_ms"]) for run in runs)
                if runs[0][key]["encoder_ms"]
                else None,
                "annotate_ms": statistics.median(run[key]["annotate_ms"] for run in runs),
                "rounds_step_ms_all_frames": [_ms(s) for s in steps],
                "per_frame_ms_round1": steps[0],
            }
        result[f"{side}_torch"] = runs[0]["torch"]
    if runner.official:
        ours = np.load(runner.work / "ours_prop.npy")
        official = np.load(runner.work / "official_prop.npy")
        result["equal"] = _compare(ours, official)
    return result


def bench_rss(runner: Runner) -> dict[str, Any]:
    args = runner.args
    model, size, n = "sam2.1_hiera_tiny", args.rss_size, args.rss_slices
    ckpt = runner.checkpoint(model, size)
    at = [1, 7, 16, 50, 100, 150, 200, 250, 300]
    at = [a for a in at if a <= n]
    folder = runner.frames(n, 64, "rss")  # small files: the loader resizes them to the input
    spec = {"model": model, "checkpoint": str(ckpt), "frames": str(folder), "image_size": size,
            "n": n, "at": at}  # fmt: skip
    result: dict[str, Any] = {"model": model, "image_size": size, "slices": n}
    result["ours"] = runner.run(
        "ours_rss", {**spec, "logits_out": str(runner.work / f"ours_rss_{size}.npz")}
    )
    if runner.official:
        result["official"] = runner.run(
            "official_rss", {**spec, "logits_out": str(runner.work / f"official_rss_{size}.npz")}
        )
        with (
            np.load(runner.work / f"ours_rss_{size}.npz") as a,
            np.load(runner.work / f"official_rss_{size}.npz") as b,
        ):
            result["equal"] = {k: _compare(a[k], b[k]) for k in a.files if k in b.files}
    return result


def bench_encoder(runner: Runner) -> dict[str, Any]:
    args = runner.args
    result: dict[str, Any] = {"size": 1024}
    sides = ["ours"] + (["official"] if runner.official else [])
    for model in args.encoder_models:
        ckpt = runner.checkpoint(model)
        runs: dict[str, list[float]] = {side: [] for side in sides}
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:  # alternate who goes first
                spec = {"model": model, "checkpoint": str(ckpt), "size": 1024,
                        "reps": args.encoder_reps}  # fmt: skip
                if r == 0:
                    spec["features_out"] = str(runner.work / f"{side}_{model}_features.npz")
                runs[side] += runner.run(f"{side}_encoder", spec)["ms"]
        entry: dict[str, Any] = {
            side: {"median_ms": statistics.median(v), "min_ms": min(v), "all_ms": v}
            for side, v in runs.items()
        }
        if runner.official:
            with (
                np.load(runner.work / f"ours_{model}_features.npz") as a,
                np.load(runner.work / f"official_{model}_features.npz") as b,
            ):
                entry["max_abs_diff"] = {k: float(np.abs(a[k] - b[k]).max()) for k in a.files}
        result[model] = entry
    return result


def report(results: dict[str, Any]) -> str:
    lines = [f"clock: {results.get('clock', 'wall')} time, {results.get('threads')} thread(s)"]
    if "propagate" in results:
        p = results["propagate"]
        lines += [
            f"\nmemory propagation, {p['model']} at 1024, {p['frames']} frames, one click on "
            "frame 0, ms per slice (median of rounds)",
            "| side | all tracked frames | bank full (frame 7 on) | frame 1 | encoder / frame |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, label in (
            ("ours_cached", "TileSAM (embeddings cached)"),
            ("official_cached", "official (features cached)"),
            ("official_uncached", "official (as it runs: encoder on every frame)"),
        ):
            if key in p:
                e = p[key]
                enc = f"{e['encoder_ms']:.0f}" if e["encoder_ms"] else "(in the step)"
                lines.append(
                    f"| {label} | {e['step_ms_all_frames']:.0f} | {e['step_ms_full_bank']:.0f} "
                    f"| {e['step_ms_frame1']:.0f} | {enc} |"
                )
        if "official_cached" in p:
            ratio = (
                p["ours_cached"]["step_ms_all_frames"] / p["official_cached"]["step_ms_all_frames"]
            )
            lines.append(f"ours / official (cached, all frames): {ratio:.2f}")
            lines.append(f"outputs: {p['equal']}")
    if "rss" in results:
        r = results["rss"]
        lines += [
            f"\nRSS along {r['slices']} slices, {r['model']} at {r['image_size']} (MiB)",
            "| side | after init | "
            + " | ".join(f"slice {k}" for k in r["ours"]["rss_mib_at"])
            + " | ms / slice |",
        ]
        lines.append("| --- " * (len(r["ours"]["rss_mib_at"]) + 3) + "|")
        for side in ("ours", "official"):
            if side in r:
                s = r[side]
                lines.append(
                    f"| {side} RSS | {s['rss_after_init_mib']:.0f} | "
                    + " | ".join(f"{v:.0f}" for v in s["rss_mib_at"].values())
                    + f" | {_ms(s['step_ms']):.0f} |"
                )
                lines.append(
                    f"| {side} memory held | | "
                    + " | ".join(f"{v:.1f}" for v in s["state_mib_at"].values())
                    + " | |"
                )
        if "equal" in r:
            lines.append(f"outputs: {r['equal']}")
    if "encoder" in results:
        e = results["encoder"]
        lines += [
            "\nencoder per 1024 x 1024 input, ms (median)",
            "| model | ours | official | ratio | ours min | official min |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for model, entry in e.items():
            if model == "size":
                continue
            ours = entry["ours"]["median_ms"]
            off = entry.get("official", {}).get("median_ms")
            ratio = f"{ours / off:.2f}" if off else "-"
            mins = [
                entry.get(side, {}).get("min_ms", float("nan")) for side in ("ours", "official")
            ]
            lines.append(
                f"| {model} | {ours:.0f} | {off or float('nan'):.0f} | {ratio} "
                f"| {mins[0]:.0f} | {mins[1]:.0f} |"
            )
            if "max_abs_diff" in entry:
                lines.append(f"features max abs diff: {entry['max_abs_diff']}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", default="all",
                        choices=["all", "propagate", "rss", "encoder"])  # fmt: skip
    parser.add_argument("--official-python", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "auto"),
        default="float32",
        help="ours: the encoder's and tracker's number format (default float32, as the "
        "official code computes on a CPU; auto: as TileSAM runs by default)",
    )
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-size", type=int, default=512)
    parser.add_argument("--rss-slices", type=int, default=300)
    parser.add_argument("--encoder-reps", type=int, default=2)
    parser.add_argument("--encoder-models", nargs="+", default=list(CONFIGS))
    parser.add_argument(
        "--workdir", default=str(Path(tempfile.gettempdir()) / "tilesam_sam2_bench")
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runner = Runner(args)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "threads": args.threads,
        "clock": args.clock,
        "official": runner.official,
        "cpu": os.cpu_count(),
    }
    benches = {"encoder": bench_encoder, "propagate": bench_propagate, "rss": bench_rss}
    for name, bench in benches.items():
        if args.what in ("all", name):
            print(f"{name} ...", flush=True)
            results[name] = bench(runner)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
