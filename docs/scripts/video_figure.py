"""The picture of docs/volumes.md's time series section: a colour video tracked in colour
and in grey.

    python docs/scripts/video_figure.py   # writes docs/images/video_tracking.png

Writes a 12-frame .mp4 of a red disc moving over dark green (as ``tests/io/test_video.py``
does), seeds the disc on frame 0 and propagates it through the frames with the bundled
model (``method="points"``), once on the video as it opens (RGB) and once decoded to grey;
draws frames 0, 3, 6, 9 and 11 with the tracked mask's outline and its IoU with the disc.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import imageio_ffmpeg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tilesam  # noqa: E402
from tilesam.io import VideoSource  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "video_tracking.png"
H, W, N = 64, 80, 12
SHOWN = (0, 3, 6, 9, 11)


def frame(t: int) -> np.ndarray:
    """A red disc (radius 10) 4 pixels further right every frame, over dark green."""
    yy, xx = np.mgrid[:H, :W]
    image = np.empty((H, W, 3), np.uint8)
    image[...] = (40, 90, 50)
    image[(yy - 32) ** 2 + (xx - (16 + 4 * t)) ** 2 <= 10**2] = (200, 40, 40)
    return image


def write_clip(path: Path) -> Path:
    writer = imageio_ffmpeg.write_frames(
        str(path), (W, H), fps=10, ffmpeg_log_level="error", output_params=["-g", "4"]
    )  # a keyframe every 4 frames, as the test's clip
    writer.send(None)
    for t in range(N):
        writer.send(frame(t).tobytes())
    writer.close()
    return path


def track(video: VideoSource, seed: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the grey walk stops at once, and says so
        return tilesam.propagate_mask(video, "tiny", mask=seed, method="points")


def main() -> None:
    clip = write_clip(Path(tempfile.mkdtemp()) / "red_disc.mp4")
    truth = np.stack([frame(t)[..., 0] > 100 for t in range(N)])
    seed = np.where(truth, 1, 0).astype(np.uint8) * (np.arange(N) == 0)[:, None, None]
    runs = {
        "colour": (VideoSource(clip), None),
        "grey": (VideoSource(clip, grey=True), "gray"),
    }
    fig, axes = plt.subplots(2, len(SHOWN), figsize=(2.2 * len(SHOWN), 4.6))
    for row, (title, (video, cmap)) in zip(axes, runs.items(), strict=True):
        labels = track(video, seed) > 0
        for ax, t in zip(row, SHOWN, strict=True):
            inter, union = (labels[t] & truth[t]).sum(), (labels[t] | truth[t]).sum()
            ax.imshow(video.read_slice(t), cmap=cmap, vmin=0, vmax=255)
            if labels[t].any():
                ax.contour(labels[t], levels=[0.5], colors="yellow", linewidths=1.5)
            ax.set_title(f"frame {t}: IoU {inter / max(union, 1):.2f}", fontsize=9)
            ax.set_axis_off()
        row[0].text(-0.08, 0.5, title, transform=row[0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=10)  # fmt: skip
    fig.suptitle("tiny tracks a red disc from a mask on frame 0 (yellow: the tracked mask)")
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
