"""The decoder's traced graphs: the same outputs as eager decoding, for every window and kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tilesam
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point
from tilesam.models.decoder_graphs import DecoderGraphs
from tilesam.samples import load_sample


@pytest.fixture(scope="module")
def nuclei():
    image, labels = load_sample("nuclei")
    return image, labels


def _prompts(labels: np.ndarray) -> list[dict]:
    """A click, clicks with a negative one, a box, a box with a point, and a propagated-slice
    prompt (box, points and the previous logits, one mask), on a few nuclei."""
    prompts = []
    for i in np.unique(labels)[1:6]:
        gt = labels == i
        y, x = center_point(gt)
        box = box_from_mask(gt)
        prompts += [
            {"points": [(y, x)]},
            {"points": [(y, x), (min(y + 25, 255), max(x - 30, 0))], "labels": [1, 0]},
            {"box": box, "multimask": False},
            {"box": box, "points": [(y, x)], "multimask": False},
        ]
    return prompts


def _decode_all(model, emb, prompts):
    out = []
    for prompt in prompts:
        result = model.predict(emb, **prompt)
        follow = model.predict(
            emb,
            box=box_from_mask(result.mask()) if result.mask().any() else (0, 0, 40, 40),
            points=[prompt.get("points", [(20, 20)])[0]],
            mask_input=result.low_res_logits[int(np.argmax(result.scores))],
            multimask=False,
        )
        out.append((result.scores, result.mask(), follow.scores, follow.mask()))
    return out


def test_graphs_give_bitwise_the_masks_of_eager_decoding(nuclei) -> None:
    image, labels = nuclei
    eager = tilesam.load_model(device="cpu")
    eager._feature_decoder = eager.sam
    traced = tilesam.load_model(device="cpu")
    emb = traced.embed(image)
    prompts = _prompts(labels)
    expected = _decode_all(eager, emb, prompts)
    _decode_all(traced, emb, prompts)  # starts the traces, decodes eagerly meanwhile
    graphs = traced._feature_decoder
    graphs.wait()
    kinds = [(1, False, False, True), (2, False, False, True), (0, True, False, False)]
    kinds += [(1, True, False, False), (1, True, True, False)]
    assert all(graphs.ready(kind) for kind in kinds)
    for want, got in zip(expected, _decode_all(traced, emb, prompts), strict=True):
        for a, b in zip(want, got, strict=True):
            np.testing.assert_array_equal(a, b)


# Nine points and no box make 15 prompt tokens: the decoder then orders its attention products
# the other way (MultiHeadAttention._folds), which the kind's point count keeps apart.
@pytest.mark.parametrize(("side", "n_points"), [(16, 1), (32, 2), (64, 1), (20, 9)])
def test_one_graph_serves_every_window_side(side, n_points) -> None:
    sam = tilesam.load_model(device="cpu").sam
    graphs = DecoderGraphs(sam)
    rng = np.random.default_rng(side)

    def prompt(side, n):
        features = torch.from_numpy(rng.normal(size=(1, 128, side, side)).astype(np.float32))
        pe = sam.prompt_encoder.get_dense_pe()[..., :side, :side]
        coords = torch.from_numpy(rng.uniform(0, 16 * side, (1, n, 2)).astype(np.float32))
        labels = torch.from_numpy(rng.integers(0, 2, (1, n)))
        return features, {"image_pe": pe, "points": (coords, labels), "multimask_output": True}

    with torch.inference_mode():
        for _ in range(2):  # the second use traces, on a 24-token window
            features, kwargs = prompt(24, n_points)
            graphs.decode_tokens(features, **kwargs)
        graphs.wait()
        features, kwargs = prompt(side, n_points)
        got = graphs.decode_tokens(features, **kwargs)
        want = sam.decode_tokens(features, **kwargs)
    assert graphs.ready((n_points, False, False, True))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_whole_grids_decoded_once_run_through_the_graphs(random_tiny, monkeypatch) -> None:
    """A model that decodes on its whole grid (SAM's, MobileSAM's) traces the kind it decodes
    on fresh features, as a walk does slice after slice, with bitwise the eager outputs."""
    traced, eager = random_tiny(3), random_tiny(3)
    for model in (traced, eager):
        model.sam.decoder_windows = ()
    eager._feature_decoder = eager.sam
    rng = np.random.default_rng(0)
    slices = [traced.embed(rng.uniform(0, 255, (256, 256)).astype(np.float32)) for _ in range(3)]
    prompt = {"box": (40, 50, 150, 170), "points": [(90, 100)], "multimask": False}
    for emb in slices[:2]:  # the second use of the kind traces
        traced.predict(emb, **prompt)
    traced._feature_decoder.wait()
    assert traced._feature_decoder.ready((1, True, False, False))

    def eager_decoding(*args, **kwargs):
        raise AssertionError("the graph should have decoded this")

    want = eager.predict(slices[2], **prompt)
    monkeypatch.setattr(traced.sam, "decode_tokens", eager_decoding)
    got = traced.predict(slices[2], **prompt)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)


def test_a_failed_trace_leaves_eager_decoding_serving(nuclei, monkeypatch, caplog) -> None:
    image, labels = nuclei
    model = tilesam.load_model(device="cpu")
    emb = model.embed(image)

    def broken(*args, **kwargs):
        raise RuntimeError("no tracing today")

    monkeypatch.setattr(torch.jit, "trace", broken)
    point = [center_point(labels == 1)]
    first = model.predict(emb, points=point)
    model.predict(emb, points=point)
    model._feature_decoder.wait()
    again = model.predict(emb, points=point)
    assert not model._feature_decoder.ready((1, False, False, True))
    assert "not traced" in caplog.text
    np.testing.assert_array_equal(first.mask(), again.mask())


def test_a_kind_decoded_once_is_not_traced(nuclei) -> None:
    image, labels = nuclei
    model = tilesam.load_model(device="cpu")
    emb = model.embed(image)
    model.predict(emb, points=[center_point(labels == 1)])
    model._feature_decoder.wait()
    assert not model._feature_decoder.ready((1, False, False, True))


def test_a_process_ending_during_a_trace_waits_for_it() -> None:
    # Ending the interpreter under a trace in progress aborted the process (exit code 134)
    # after its work was done, e.g. at the end of `tilesam propagate`. atexit handlers run
    # after the interpreter has joined its non-daemon threads: the trace is finished there.
    import subprocess
    import sys

    script = """
import atexit
import tilesam
from tilesam.evaluate.simulated_prompts import center_point
from tilesam.samples import load_sample
image, labels = load_sample("nuclei")
model = tilesam.load_model(device="cpu")
emb = model.embed(image)
point = [center_point(labels == 1)]
model.predict(emb, points=point)
model.predict(emb, points=point)  # the second use starts the trace
atexit.register(lambda: print("traced:", model._feature_decoder.ready((1, False, False, True))))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "traced: True" in done.stdout
