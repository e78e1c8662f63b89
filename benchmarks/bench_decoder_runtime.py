"""The prompt decoder on a window of tokens: torch (as a loaded model runs it), NumPy (as a
session on a complete cache runs it, :mod:`tilesam.decode.numpy_decoder`) and ONNX Runtime.

A click's decoder is a few hundred small operations, so its time is set by their number
more than by the tokens; NumPy and a graph runtime run them with less overhead than torch,
and import in a fraction of torch's time (the cold first mask). This script checks that
NumPy and ONNX Runtime give torch's logits and IoU and times all three on the same inputs,
alternating. For ONNX Runtime it exports the decoder as one graph per prompt kind
(``torch.onnx.export``, the TorchScript exporter); that runtime is a design comparison
only, TileSAM does not use it.

Prompt kinds: ``click`` (one point, three candidates) and ``propagate`` (a box, two points
and a mask input, one mask: what a slice of propagation sends). The decoded window is
``--window`` tokens a side with the default model's 128 channels; logits cover the whole
window (the upscaling included), as `Prediction.mask` needs for a mask that fills it.

The ONNX Runtime rows need ``onnxruntime`` and ``onnx`` (``pip install onnxruntime onnx``),
which TileSAM does not depend on; without them the script times torch and NumPy.

Examples
--------
    python benchmarks/bench_decoder_runtime.py --json bench_decoder_runtime.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import tilesam
from tilesam.decode.numpy_decoder import NumpyDecoder


class WindowDecoder(torch.nn.Module):
    """`Sam.decode` for one prompt kind, with tensors in and out (what the exporter needs)."""

    def __init__(self, sam, kind: str) -> None:
        super().__init__()
        self.sam, self.kind = sam, kind

    def forward(self, features, image_pe, coords, labels, box=None, mask_input=None):
        if self.kind == "click":
            return self.sam.decode(
                features, points=(coords, labels), image_pe=image_pe, multimask_output=True
            )
        return self.sam.decode(
            features,
            points=(coords, labels),
            boxes=box,
            mask_input=mask_input,
            image_pe=image_pe,
            multimask_output=False,
        )


def inputs(sam, kind: str, side: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    channels = sam.prompt_encoder.embed_dim
    out = {
        "features": torch.from_numpy(rng.normal(size=(1, channels, side, side)).astype(np.float32)),
        "image_pe": sam.prompt_encoder.get_dense_pe()[..., :side, :side].contiguous(),
        "coords": torch.tensor([[[180.0, 200.0]]]),
        "labels": torch.tensor([[1]]),
    }
    if kind == "propagate":
        out["coords"] = torch.tensor([[[180.0, 200.0], [300.0, 120.0]]])
        out["labels"] = torch.tensor([[1, 0]])
        out["box"] = torch.tensor([[150.0, 160.0, 230.0, 250.0]])
        low_res = 4 * side
        mask = rng.normal(size=(1, 1, low_res, low_res)).astype(np.float32)
        out["mask_input"] = torch.from_numpy(mask)
    return out


def median_ms(run, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    ms = 1000 * np.array(times)
    return float(np.median(ms)), float(np.percentile(ms, 90))


def import_seconds(module: str) -> float:
    """Seconds to import `module` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )


def bench_kind(model, kind: str, side: int, repeats: int, workdir: Path) -> list[dict]:
    sam = model.sam
    module = WindowDecoder(sam, kind).eval()
    feed = inputs(sam, kind, side)
    with torch.inference_mode():
        reference = [t.numpy() for t in module(*feed.values())]
    arrays = {k: v.numpy() for k, v in feed.items()}

    def eager():
        with torch.inference_mode():
            module(*feed.values())

    rows = [{"kind": kind, "runtime": "torch", "threads": torch.get_num_threads(), "run": eager}]
    rows.append(numpy_row(model, kind, arrays, reference))
    if onnx_available():
        rows += onnx_rows(module, kind, feed, arrays, reference, workdir)
    for row in rows:  # warm up
        row["run"]()
    times: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(rows))}
    for _ in range(3):  # alternate, so that the machine's noise falls on all alike
        for i, row in enumerate(rows):
            times[i].append(median_ms(row["run"], repeats))
    for i, row in enumerate(rows):
        del row["run"]
        row["median_ms"] = float(np.median([m for m, _ in times[i]]))
        row["p90_ms"] = float(np.median([p for _, p in times[i]]))
    return rows


def numpy_row(model, kind: str, arrays: dict[str, np.ndarray], reference) -> dict:
    """The decoder as :class:`tilesam.decode.numpy_decoder.NumpyDecoder` runs it, window
    upscaled."""
    decoder = NumpyDecoder(*model.decoder_weights())
    side = arrays["features"].shape[-1]
    prompt = {
        "points": (arrays["coords"][0], arrays["labels"][0]),
        "box": arrays["box"][0] if "box" in arrays else None,
        "mask_input": arrays["mask_input"][0, 0] if "mask_input" in arrays else None,
        "multimask": kind == "click",
    }

    def run():
        tokens, hyper_in, iou = decoder.decode_tokens(
            arrays["features"][0], arrays["image_pe"][0], **prompt
        )
        return decoder.upscale_masks(tokens, hyper_in, (side, side)), iou

    logits, iou = run()
    return {
        "kind": kind,
        "runtime": "numpy",
        "threads": torch.get_num_threads(),
        "max_abs_diff_logits": float(np.abs(logits - reference[0][0]).max()),
        "max_abs_diff_iou": float(np.abs(iou - reference[1][0]).max()),
        "run": run,
    }


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_rows(module, kind, feed, arrays, reference, workdir: Path) -> list[dict]:
    """ONNX Runtime with one thread and with torch's number, on an exported graph."""
    import onnxruntime as ort

    names = list(feed)
    path = workdir / f"{kind}.onnx"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(feed.values()),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["logits", "iou"],
        )
    export_s = time.perf_counter() - start
    rows = []
    for threads in sorted({1, torch.get_num_threads()}):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        create_s = time.perf_counter() - start
        logits, iou = session.run(None, arrays)
        rows.append(
            {
                "kind": kind,
                "runtime": "onnxruntime",
                "threads": threads,
                "export_s": export_s,
                "session_s": create_s,
                "max_abs_diff_logits": float(np.abs(logits - reference[0]).max()),
                "max_abs_diff_iou": float(np.abs(iou - reference[1]).max()),
                "run": lambda s=session: s.run(None, arrays),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="registry name (default: tiny)")
    parser.add_argument("--window", type=int, default=24, help="window side in tokens")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="results file")
    args = parser.parse_args()
    model = tilesam.load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            r
            for k in ("click", "propagate")
            for r in bench_kind(model, k, args.window, args.repeats, Path(tmp))
        ]
    onnx = ["onnxruntime"] if onnx_available() else []
    modules = ["torch", "tilesam.decode.numpy_decoder", *onnx]
    imports = {m: import_seconds(m) for m in modules}
    print(f"{'prompt':10s} {'runtime':12s} {'threads':>7s} {'median ms':>10s} {'p90 ms':>8s}")
    for r in rows:
        print(
            f"{r['kind']:10s} {r['runtime']:12s} {r['threads']:7d} {r['median_ms']:10.2f} "
            f"{r['p90_ms']:8.2f}"
        )
    for r in rows:
        if r["runtime"] != "torch":
            made = ""
            if r["runtime"] == "onnxruntime":
                made = f"export {r['export_s']:.1f} s, session {r['session_s']:.2f} s, "
            print(
                f"{r['kind']}, {r['runtime']}, {r['threads']} thread(s): {made}"
                f"max |diff| logits {r['max_abs_diff_logits']:.1e}, IoU {r['max_abs_diff_iou']:.1e}"
            )
    print("import in a fresh process: " + ", ".join(f"{m} {s:.2f} s" for m, s in imports.items()))
    if args.json:
        result = {
            "model": args.model,
            "window": args.window,
            "machine": platform.machine(),
            "rows": rows,
            "import_s": imports,
        }
        args.json.write_text(json.dumps(result, indent=2))
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
