"""Time series and video: real .mp4 files written with the bundled ffmpeg, TYX arrays and
ImageJ TIFFs, frames of different sizes, and tracking a moving disc through time."""

from __future__ import annotations

import pickle
import warnings

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import tifffile

from tilesam.errors import TileSAMError
from tilesam.io import ArraySource, VideoSource, open_image, write_labels
from tilesam.volumes.propagate import propagate_mask

H, W, N = 64, 80, 12


def disc_frame(t: int, speed: int = 4) -> np.ndarray:
    """Frame `t`: a bright disc (radius 10) moving right by `speed` pixels a frame, with a
    tint that changes with `t` so that every frame differs."""
    yy, xx = np.mgrid[:H, :W]
    frame = np.full((H, W, 3), 30, np.uint8)
    frame[(yy - 32) ** 2 + (xx - (16 + speed * t)) ** 2 <= 10**2] = 220
    frame[..., 2] = 30 + 8 * t
    return frame


def write_video(path, frames, fps: int = 10, **kwargs) -> str:
    writer = imageio_ffmpeg.write_frames(
        str(path), (frames[0].shape[1], frames[0].shape[0]), fps=fps,
        ffmpeg_log_level="error", **kwargs,
    )  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """A 12-frame 64 x 80 H.264 .mp4 of the moving disc, a keyframe every 4 frames."""
    path = tmp_path_factory.mktemp("video") / "disc.mp4"
    return write_video(path, [disc_frame(t) for t in range(N)], output_params=["-g", "4"])


# -- video files -------------------------------------------------------------------------------
def test_video_opens_lazily_as_frames(clip) -> None:
    src = open_image(clip)
    assert isinstance(src, VideoSource) and src.is_time_series
    assert (src.axes, src.shape, src.dtype) == ("ZYXC", (N, H, W, 3), np.uint8)
    assert (src.n_slices, src.slice_shape, src.spacing) == (N, (H, W), (1.0, 1.0, 1.0))
    assert src.fps == 10.0 and src.n_frames == N and src.duration == pytest.approx(1.2)
    assert src.metadata["codec"] == "h264"
    assert src.n_decoded == 1  # only the first frame, to check the stream decodes
    frame = src.read_slice(3)
    assert frame.shape == (H, W, 3) and src.n_decoded == 4  # decoded on through 1..3
    src.read_slice(3)
    src.read_slice(2)
    assert src.n_decoded == 4  # both in the LRU of decoded frames
    # Lossy, but the frame is the one written: the disc where it should be, the tint.
    assert np.abs(frame.astype(int) - disc_frame(3)).mean() < 4
    region = src.read((slice(5, 7), slice(10, 20), slice(30, 35)))
    assert region.shape == (2, 10, 5, 3)
    src.close()


def test_random_access_equals_sequential_decode(clip) -> None:
    sequential = VideoSource(clip).read()
    assert sequential.shape == (N, H, W, 3)
    src = VideoSource(clip, cache_frames=1)  # every revisit seeks again
    for z in (7, 3, 11, 0, 5, 6, 2, 9, 1, 10, 4, 8, 7):
        np.testing.assert_array_equal(src.read_slice(z), sequential[z])
    grey = VideoSource(clip, grey=True)
    assert (grey.axes, grey.shape) == ("ZYX", (N, H, W))
    np.testing.assert_array_equal(grey.read_slice(9), VideoSource(clip, grey=True).read()[9])


def test_video_pickles_by_path(clip) -> None:
    src = VideoSource(clip, grey=True, cache_frames=3)
    src.read_slice(5)
    back = pickle.loads(pickle.dumps(src))
    assert (back.axes, back.shape, back.path) == (src.axes, src.shape, src.path.absolute())
    np.testing.assert_array_equal(back.read_slice(5), src.read_slice(5))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_video_raises(clip, tmp_path, keep: float) -> None:
    data = open(clip, "rb").read()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TileSAMError, match="Cannot decode .*cut.mp4.* as a video"):
        open_image(bad)


def test_not_a_video_raises(tmp_path) -> None:
    junk = tmp_path / "camera.avi"
    junk.write_bytes(b"not a video " * 100)
    with pytest.raises(TileSAMError, match="Cannot decode .*camera.avi.*Invalid data"):
        open_image(junk)
    with pytest.raises(TileSAMError, match="is a video"):
        open_image(junk, axes="TYX")


def test_avi_opens(tmp_path) -> None:
    frames = [disc_frame(t) for t in range(5)]
    path = write_video(tmp_path / "clip.avi", frames, codec="mjpeg", output_params=["-q:v", "2"])
    src = open_image(path)
    assert src.shape == (5, H, W, 3)
    assert np.abs(src.read_slice(4).astype(int) - frames[4]).mean() < 4


# -- time series given as arrays, TIFFs, frame lists -------------------------------------------
def test_tyx_array_opens_as_frames() -> None:
    movie = np.stack([disc_frame(t)[..., 0] for t in range(N)])
    src = open_image(movie, axes="TYX")
    assert (src.axes, src.shape, src.is_time_series) == ("ZYX", (N, H, W), True)
    np.testing.assert_array_equal(src.read_slice(6), movie[6])
    colour = ArraySource(np.zeros((3, 4, 8, 9), np.uint8), axes="CTYX")
    assert (colour.axes, colour.shape) == ("ZYXC", (4, 8, 9, 3))
    assert not open_image(movie).is_time_series  # without T: a volume, as before


def test_time_and_z_rules() -> None:
    one_plane = ArraySource(np.zeros((6, 1, 8, 9), np.uint8), axes="TZYX")
    assert (one_plane.axes, one_plane.shape, one_plane.is_time_series) == ("ZYX", (6, 8, 9), True)
    one_time = ArraySource(np.zeros((1, 5, 8, 9), np.uint8), axes="TZYX")
    assert (one_time.axes, one_time.shape, one_time.is_time_series) == ("ZYX", (5, 8, 9), False)
    with pytest.raises(TileSAMError, match=r"6 time points of 5-slice.*array\[:, z\].*'TYX'"):
        ArraySource(np.zeros((6, 5, 8, 9), np.uint8), axes="TZYX")
    with pytest.raises(TileSAMError, match="'T' appears twice"):
        ArraySource(np.zeros((2, 2, 8, 9), np.uint8), axes="TTYX")


def test_imagej_tyx_tiff_opens_as_frames(tmp_path) -> None:
    movie = np.stack([disc_frame(t)[..., 0] for t in range(N)])
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX"})
    src = open_image(path)
    assert (src.axes, src.shape, src.is_time_series) == ("ZYX", (N, H, W), True)
    np.testing.assert_array_equal(src.read_slice(11), movie[11])
    assert open_image(path, axes="TYX").spacing == src.spacing
    volumes = tmp_path / "volumes.tif"
    tifffile.imwrite(volumes, np.zeros((3, 4, 8, 9), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})  # fmt: skip
    with pytest.raises(TileSAMError, match="3 time points of 4-slice volumes"):
        open_image(volumes)


def test_frame_list_and_picture_folder(tmp_path) -> None:
    frames = [disc_frame(t) for t in range(4)]
    src = open_image(frames)
    assert (src.axes, src.shape, src.is_time_series) == ("ZYXC", (4, H, W, 3), True)
    for t, frame in enumerate(frames):  # numbers sort as numbers: 2 before 10
        iio.imwrite(tmp_path / f"frame_{(t + 1) * 4}.png", frame)
    folder = open_image(tmp_path)
    assert (folder.axes, folder.shape, folder.is_time_series) == ("ZYXC", (4, H, W, 3), True)
    np.testing.assert_array_equal(folder.read(), np.stack(frames))


def test_frames_of_different_sizes_raise(tmp_path) -> None:
    frames = [np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8), np.zeros((H, W + 2))]
    with pytest.raises(TileSAMError, match=r"one size: frame 0 is \(64, 80\) but frame 2"):
        open_image(frames)
    iio.imwrite(tmp_path / "a.png", frames[0])
    iio.imwrite(tmp_path / "b.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(TileSAMError, match=r"'a.png' is \(64, 80\) but 'b.png' is \(65, 80\)"):
        open_image(tmp_path)


# -- tracking through time ---------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_tracking_a_moving_disc_keeps_its_id(tiny, clip, tmp_path) -> None:
    """The bundled `tiny` follows the disc (4 pixels a frame) through all 12 frames of the
    video. Method "points": the default "prompt" keeps the next mask inside the last box
    plus a small margin, which a moving object leaves (docs/volumes.md)."""
    video = VideoSource(clip, grey=True)  # the disc is white: grey keeps all of it
    seed = np.zeros((N, H, W), np.uint8)
    seed[0] = np.where(disc_frame(0)[..., 0] > 100, 7, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = propagate_mask(video, tiny, mask=seed, method="points")
    assert labels.shape == (N, H, W) and set(np.unique(labels)) == {0, 7}
    truth = [disc_frame(t)[..., 0] > 100 for t in range(N)]
    ious = [_iou(labels[t] == 7, truth[t]) for t in range(N)]
    assert min(ious) > 0.5, ious  # 0.88 to 0.95 measured
    assert np.mean(ious) > 0.8, ious
    back = open_image(write_labels(tmp_path / "track.ome.zarr", labels, like=video))
    np.testing.assert_array_equal(back.read(), labels)


def red_disc_frame(t: int) -> np.ndarray:
    """Frame `t` of a red disc moving right 4 pixels a frame over dark green: in grey the
    two are 93 against 60, in colour far apart."""
    yy, xx = np.mgrid[:H, :W]
    frame = np.empty((H, W, 3), np.uint8)
    frame[...] = (40, 90, 50)
    frame[(yy - 32) ** 2 + (xx - (16 + 4 * t)) ** 2 <= 10**2] = (200, 40, 40)
    return frame


def test_a_colour_video_is_tracked_in_colour(tiny, tmp_path) -> None:
    """An RGB video propagates as it opens (ZYXC): the encoder sees the colours, which here
    are what tells the disc from the ground."""
    frames = [red_disc_frame(t) for t in range(N)]
    video = open_image(write_video(tmp_path / "red.mp4", frames, output_params=["-g", "4"]))
    assert video.axes == "ZYXC"
    truth = [frame[..., 0] > 100 for frame in frames]
    seed = np.zeros((N, H, W), np.uint8)
    seed[0] = np.where(truth[0], 3, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = propagate_mask(video, tiny, mask=seed, method="points")
    ious = [_iou(labels[t] == 3, truth[t]) for t in range(N)]
    assert min(ious) > 0.6 and np.mean(ious) > 0.8, ious  # 0.78 to 0.94 measured


def test_a_two_channel_volume_is_refused_by_name(tiny) -> None:
    volume = np.zeros((4, 32, 32, 2), np.uint8)
    with pytest.raises(TileSAMError, match="has 2 channels.*select one channel or three"):
        propagate_mask(open_image(volume, axes="ZYXC"), tiny, points=[(1, 16, 16)])
