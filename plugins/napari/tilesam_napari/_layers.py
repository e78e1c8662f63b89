"""The annotation layers and the conversion of their prompts to image coordinates.

Prompt layers are created with the image layer's scale and translate, but the user may
move or rescale any layer, so prompts are always mapped layer data -> world -> image
data: the core then gets ``(y, x)`` pixel positions of the image, its own convention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Layer, Points, Shapes

    from tilesam_napari._labels import Window

POINTS, BOXES = "prompts", "box_prompts"
CURRENT, COMMITTED = "current_object", "committed_objects"
POSITIVE_COLOR, NEGATIVE_COLOR = "lime", "red"

#: What napari calls for a key: the viewer or the layer the key was pressed in.
KeyHandler = Callable[[Any], None]


def geometry(image: Image) -> dict[str, Any]:
    """Scale, translate and affine (a rotated GeoTIFF's) of the image layer's spatial axes,
    for layers laid over it."""
    n = spatial_ndim(image)
    return {
        "scale": tuple(image.scale[-n:]),
        "translate": tuple(image.translate[-n:]),
        "affine": image.affine.affine_matrix[-n - 1 :, -n - 1 :],
    }


def spatial_ndim(image: Image) -> int:
    """2 or 3: the image layer's dimensions without an RGB channel axis."""
    return image.ndim  # napari counts an RGB layer's channels outside ndim


def pick_image(
    viewer: napari.Viewer, image: Image | str | None, previous: Image | None = None
) -> Image:
    """The image layer to segment: `image` (a layer or its name), else the selected image
    layer, the `previous` one while it is in the viewer, or the first."""
    if isinstance(image, Image):
        return image
    if isinstance(image, str):
        if image not in viewer.layers:
            raise TileSAMError(f"There is no layer called {image!r} in the viewer.")
        image = viewer.layers[image]
        if not isinstance(image, Image):
            raise TileSAMError(f"Layer {image.name!r} is not an image layer.")
        return image
    if image is not None:
        raise TileSAMError(f"Expected an image layer or its name, got {type(image).__name__}.")
    images = [lyr for lyr in viewer.layers if isinstance(lyr, Image)]
    active = viewer.layers.selection.active
    if isinstance(active, Image):
        return active
    if previous is not None and previous in images:
        return previous
    if not images:
        raise TileSAMError(
            "No image layer to segment: open an image (File > Open, or drag it into the "
            "viewer) and press the button again."
        )
    return images[0]


def get_or_add(viewer: napari.Viewer, name: str, factory: Callable[[], Layer]) -> Layer:
    """The layer called `name`, created by `factory()` if the viewer has none."""
    if name in viewer.layers:
        return viewer.layers[name]
    return factory()


def add_points(viewer: napari.Viewer, image: Image) -> Points:
    """The ``prompts`` layer: positive points (label True) lime, negative red, in add mode."""
    layer = viewer.add_points(
        np.zeros((0, spatial_ndim(image))),
        name=POINTS,
        # bool, not int: napari takes a small-int feature for a colour cycle and warns.
        features={"label": np.zeros(0, dtype=bool)},
        feature_defaults={"label": True},
        face_color="label",
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_color="white",
        size=point_size(image),
        metadata=over_metadata(image),
        **geometry(image),
    )
    layer.mode = "add"
    return layer


def add_boxes(viewer: napari.Viewer, image: Image) -> Shapes:
    """The ``box_prompts`` layer, drawing rectangles."""
    layer = viewer.add_shapes(
        ndim=spatial_ndim(image),
        name=BOXES,
        metadata=over_metadata(image),
        **box_style(image),
        **geometry(image),
    )
    layer.mode = "add_rectangle"
    return layer


def box_style(image: Image) -> dict[str, Any]:
    """The look of box prompts (yellow outlines) over `image`."""
    return {
        "shape_type": "rectangle",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": max(1.0, point_size(image) / 4),
    }


def over_metadata(image: Image) -> dict[str, Any]:
    """The metadata of a prompt layer over `image`: the image's geometry (a GeoTIFF's
    georeference shows the cursor's map coordinates while the layer is selected)."""
    geometry = image.metadata.get("tilesam_geometry")
    return {} if geometry is None else {"tilesam_geometry": dict(geometry)}


def add_labels(
    viewer: napari.Viewer, image: Image, name: str, data: Any, *, opacity: float = 0.6
) -> Labels:
    """A labels layer over the image (``current_object`` or ``committed_objects``)."""
    # The image's metadata (e.g. its source file) lets the writers copy its geometry.
    metadata = dict(image.metadata)
    return viewer.add_labels(data, name=name, opacity=opacity, metadata=metadata, **geometry(image))


def set_pixels(layer: Labels, windows: Sequence[Window], value: int, *, refresh: bool) -> None:
    """Set the True pixels of `windows` in a labels layer, redrawing only what changed."""
    coords = []
    for w in windows:
        yy, xx = np.nonzero(w.mask)
        idx = (yy + w.offset[0], xx + w.offset[1])
        coords.append(idx if w.z is None else (np.full(len(yy), w.z), *idx))
    indices = tuple(np.concatenate(parts) for parts in zip(*coords))
    layer.data_setitem(indices, value, refresh=refresh)


def bind_keys_on(target: napari.Viewer | Layer, handlers: dict[str, KeyHandler]) -> None:
    """Bind `handlers` on a viewer or a layer, replacing napari's own use of the keys."""
    for key, handler in handlers.items():
        target.bind_key(key, handler, overwrite=True)


def point_size(image: Image) -> float:
    """The size of prompt points over `image`, in its pixels."""
    # In image pixels: napari sizes markers in the layer's data units, which the layer's
    # scale (shared with the image) then maps to the world.
    h, w = image.data[0].shape[-2:] if image.multiscale else image.data.shape[-2:]
    return float(np.clip(max(h, w) / 100, 4, 30))


# -- reading prompts ---------------------------------------------------------------------------
def to_image_data(layer: Layer, image: Image, coords: np.ndarray) -> np.ndarray:
    """Map `coords` (rows of layer data coordinates) to image layer data coordinates."""
    if len(coords) == 0:
        return np.zeros((0, image.ndim))
    return np.array([image.world_to_data(layer.data_to_world(c)) for c in coords])


def from_image_data(layer: Layer, image: Image, coords: np.ndarray) -> np.ndarray:
    """Map `coords` (rows of image layer data coordinates) to `layer`'s data coordinates:
    the inverse of `to_image_data`."""
    if len(coords) == 0:
        return np.zeros((0, layer.ndim))
    return np.array([layer.world_to_data(image.data_to_world(c)) for c in coords])


def current_z(viewer: napari.Viewer, image: Image) -> int | None:
    """The slice of a volume the viewer shows, in image data coordinates (None in 2D)."""
    if spatial_ndim(image) == 2:
        return None
    return int(np.round(image.world_to_data(viewer.dims.point)[0]))


def read_prompt(
    points_layer: Points | None, boxes_layer: Shapes | None, image: Image, z: int | None
) -> Prompt:
    """The prompts on slice `z` (all of them in 2D), in image pixel coordinates."""
    pts = np.zeros((0, 2))
    labels = np.zeros(0, dtype=int)
    if points_layer is not None and len(points_layer.data):
        yx = to_image_data(points_layer, image, np.asarray(points_layer.data))
        lab = np.asarray(points_layer.features["label"], dtype=int)
        keep = _on_slice(yx, z)
        pts, labels = yx[keep][:, -2:], lab[keep]
    return Prompt(pts, labels, _last_box(boxes_layer, image, z))


def _on_slice(coords: np.ndarray, z: int | None) -> np.ndarray:
    if z is None:
        return np.ones(len(coords), bool)
    return np.round(coords[:, 0]).astype(int) == z


def _last_box(
    boxes_layer: Shapes | None, image: Image, z: int | None
) -> tuple[float, float, float, float] | None:
    """The newest rectangle on slice `z` as ``(y0, x0, y1, x1)``; None if there is none."""
    if boxes_layer is None:
        return None
    for vertices in reversed(boxes_layer.data):
        corners = to_image_data(boxes_layer, image, np.asarray(vertices))
        if not _on_slice(corners[:1], z).all():
            continue
        (y0, x0), (y1, x1) = corners[:, -2:].min(0), corners[:, -2:].max(0)
        return (float(y0), float(x0), float(y1), float(x1))
    return None


# -- showing prompts given in code -------------------------------------------------------------
def show_prompt(layer: Points | Shapes, image: Image, prompt: Prompt, z: int | None) -> None:
    """Replace the prompts on slice `z` (all of them in 2D) of the ``prompts`` layer (its
    points and labels) or the ``box_prompts`` layer (its rectangle) by `prompt`'s, given in
    image pixels: `read_prompt` reads `prompt` back from them."""
    if layer.name == POINTS:
        _show_points(layer, image, prompt, z)
    else:
        _show_box(layer, image, prompt, z)


def _show_points(layer: Points, image: Image, prompt: Prompt, z: int | None) -> None:
    old = np.asarray(layer.data)
    labels = np.asarray(layer.features["label"], dtype=bool)
    keep = ~_on_slice(to_image_data(layer, image, old), z) if len(old) else np.zeros(0, bool)
    new = from_image_data(layer, image, _on_plane(np.asarray(prompt.points, float), z))
    # The label of the next click (T toggles it) is not the console's business.
    defaults = layer.feature_defaults.copy()
    layer.selected_data = set()
    layer.data = np.concatenate([old[keep].reshape(-1, layer.ndim), new])
    layer.features = {"label": np.concatenate([labels[keep], np.asarray(prompt.labels) > 0])}
    layer.feature_defaults = defaults
    layer.refresh_colors()


def _show_box(layer: Shapes, image: Image, prompt: Prompt, z: int | None) -> None:
    on_slice = {
        i
        for i, vertices in enumerate(layer.data)
        if _on_slice(to_image_data(layer, image, np.asarray(vertices))[:1], z).all()
    }
    if on_slice:
        layer.selected_data = on_slice
        layer.remove_selected()
    if prompt.box is not None:
        y0, x0, y1, x1 = prompt.box
        corners = np.array([(y0, x0), (y0, x1), (y1, x1), (y1, x0)], float)
        layer.add_rectangles([from_image_data(layer, image, _on_plane(corners, z))])


def _on_plane(yx: np.ndarray, z: int | None) -> np.ndarray:
    """``(y, x)`` rows, with slice `z` in front on a volume."""
    yx = yx.reshape(-1, 2)
    return yx if z is None else np.column_stack([np.full(len(yx), float(z)), yx])


def show_slice(viewer: napari.Viewer, image: Image, z: int) -> None:
    """Move the viewer to slice `z` of a volume image layer."""
    world = image.data_to_world((z, *(0,) * (image.ndim - 1)))
    viewer.dims.set_point(viewer.dims.ndim - image.ndim, float(world[0]))
