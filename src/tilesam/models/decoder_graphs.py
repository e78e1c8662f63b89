"""The prompt decoder on features as TorchScript graphs, one per prompt kind, traced aside.

Features are a window of the token grid (a model trained on windows, ``Sam.decoder_windows``)
or a whole grid decoded as it is, without prepared image tokens (a slice in propagation).

A click's decoder is a few hundred small torch operations, and run eagerly their Python
dispatch sets its time more than the arithmetic does. Traced and frozen (``torch.jit.trace``,
``torch.jit.freeze``) the same operations run in about 60 % of the time with bitwise the same
outputs (see ``docs/benchmarks.md``). A graph holds the prompt's structure (its number of
points, whether it has a box and a mask input, whether it asks for three candidates), not the
window's size: one graph serves every window side. The number of points is part of the kind
because the decoder picks the order of its attention products by the number of prompt tokens,
a choice a trace would fix.

Tracing a kind takes about a second, so it runs on a background thread the second time that
kind is decoded (a one-shot command decodes once and never pays for it); eager decoding serves
until the graph is ready and no click waits for it.
Graphs run with the JIT executor's optimisations off: the profiling executor would spend its
first runs (hundreds of milliseconds) specialising them, on a user's clicks.
"""

from __future__ import annotations

import logging
import threading
import warnings

import torch
from torch import nn

from tilesam.models.sam import Sam

__all__ = ["DecoderGraphs"]

logger = logging.getLogger(__name__)

# (number of points, box, mask input, three candidates)
PromptKind = tuple[int, bool, bool, bool]

# Tracing warns where Python values become constants of the graph; the kinds are made so that
# those values are the same for every prompt of a kind.
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"tilesam\.")


class DecoderGraphs:
    """``Sam.decode_tokens`` on plain tensors, through a traced graph once one is ready.

    The weights are frozen into each graph when it is traced: use one ``DecoderGraphs`` per
    set of weights (:class:`tilesam.SamModel` makes one; training decodes eagerly).

    Examples
    --------
    >>> import tilesam
    >>> sam = tilesam.load_model().sam  # the bundled ``tiny``
    >>> graphs = DecoderGraphs(sam)
    >>> features = torch.randn(1, 128, 16, 16)  # a window of 16 x 16 image tokens
    >>> image_pe = sam.prompt_encoder.get_dense_pe()[..., :16, :16]
    >>> points = (torch.tensor([[[40.0, 40.0]]]), torch.tensor([[1]]))  # one click, (x, y)
    >>> with torch.no_grad():
    ...     eager = graphs.decode_tokens(features, image_pe=image_pe, points=points)
    ...     _ = graphs.decode_tokens(features, image_pe=image_pe, points=points)  # traces aside
    ...     graphs.wait()
    ...     traced = graphs.decode_tokens(features, image_pe=image_pe, points=points)
    >>> graphs.ready((1, False, False, True))  # one point, no box, no mask input, 3 masks
    True
    >>> tokens, hyper_in, iou = traced
    >>> tokens.shape, hyper_in.shape, iou.shape
    (torch.Size([1, 256, 128]), torch.Size([1, 3, 16]), torch.Size([1, 3]))
    >>> all(torch.equal(a, b) for a, b in zip(eager, traced))  # bitwise the same outputs
    True
    """

    def __init__(self, sam: Sam) -> None:
        self._sam = sam
        self._graphs: dict[PromptKind, torch.jit.ScriptModule] = {}
        self._uses: dict[PromptKind, int] = {}
        self._tracers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def decode_tokens(
        self,
        features: torch.Tensor,
        *,
        image_pe: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image tokens, hypernetwork weights and IoU, as :meth:`Sam.decode_tokens` gives them
        for features (not ``ImageTokens``) and an explicit ``image_pe``."""
        n_points = 0 if points is None else points[0].shape[1]
        kind = (n_points, boxes is not None, mask_input is not None, multimask_output)
        inputs = (features, image_pe, *(points or ()), *_present(boxes, mask_input))
        graph = self._graphs.get(kind)
        if graph is not None:
            with torch.jit.optimized_execution(False):
                return graph(*inputs)
        self._trace_later(kind, inputs)
        return self._sam.decode_tokens(
            features,
            points=points,
            boxes=boxes,
            mask_input=mask_input,
            multimask_output=multimask_output,
            image_pe=image_pe,
        )

    def ready(self, kind: PromptKind) -> bool:
        """Whether prompts of ``kind`` (number of points, box, mask input, three candidates) run
        through a graph."""
        return kind in self._graphs

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the traces started so far (tests and benchmarks, which need the graphs)."""
        for thread in list(self._tracers):
            thread.join(timeout)

    def _trace_later(self, kind: PromptKind, inputs: tuple[torch.Tensor, ...]) -> None:
        with self._lock:
            self._uses[kind] = uses = self._uses.get(kind, 0) + 1
            if uses != 2:
                return
        example = tuple(t.detach().clone() for t in inputs)
        # Not a daemon: the interpreter waits for it at exit (about a second) rather than
        # tearing torch down under a trace in progress, which aborts the process.
        tracer = threading.Thread(
            target=self._trace, args=(kind, example), name=f"tilesam-trace-{kind}"
        )
        self._tracers.append(tracer)  # one caller per kind gets here
        tracer.start()

    def _trace(self, kind: PromptKind, example: tuple[torch.Tensor, ...]) -> None:
        try:
            with torch.no_grad():
                module = _KindDecoder(self._sam, kind).eval()
                traced = torch.jit.trace(module, example, check_trace=False)
                self._graphs[kind] = torch.jit.freeze(traced)
        except Exception:  # noqa: BLE001 - eager decoding goes on serving this kind
            logger.warning("decoder graph for prompt kind %s not traced", kind, exc_info=True)


class _KindDecoder(nn.Module):
    """``Sam.decode_tokens`` for one prompt kind, with tensors in and out (what tracing needs)."""

    def __init__(self, sam: Sam, kind: PromptKind) -> None:
        super().__init__()
        self.sam = sam
        self.kind = kind

    def forward(
        self, features: torch.Tensor, image_pe: torch.Tensor, *prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_points, has_box, has_mask, multimask = self.kind
        rest = iter(prompt)
        points = (next(rest), next(rest)) if n_points else None
        return self.sam.decode_tokens(
            features,
            points=points,
            boxes=next(rest) if has_box else None,
            mask_input=next(rest) if has_mask else None,
            multimask_output=multimask,
            image_pe=image_pe,
        )


def _present(*tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    return tuple(t for t in tensors if t is not None)
