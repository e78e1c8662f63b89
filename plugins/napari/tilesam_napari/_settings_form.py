"""The dock widget's settings as magicgui forms, read into and filled from `Settings`.

Two forms: `main` (model, checkpoint, image layer, cache, CT window) and `advanced`
(device, axes, tile size, halo, intensity range), which the dock widget folds away. Each
field is named after the `Settings` field it fills. "auto" leaves a choice to the core: the
device to `tilesam.models.loading.pick_device`, the axes to the layer, the tile size and
halo to an existing cache, else the model's input size and
`tilesam.cache.tiling.DEFAULT_HALO`, and the CT window and intensity range to an existing
cache, else the soft-tissue window for a CT-like image (`tilesam_napari._session.
looks_like_ct`), else the image's own range.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from magicgui.widgets.bases import ValuedContainerWidget
from napari.layers import Image

from tilesam.cache.tiling import DEFAULT_HALO
from tilesam.models.preprocess import CT_WINDOWS
from tilesam.models.registry import MODELS
from tilesam.models.weights import DEFAULT_MODEL
from tilesam_napari._session import AUTO_CT_WINDOW, CT_LOWEST, CT_SPAN, NO_WINDOW, Settings

if TYPE_CHECKING:
    import napari

AUTO = "auto"
DEVICES = (AUTO, "cpu", "cuda", "mps")
AXES = (AUTO, "YX", "YXC", "ZYX", "ZYXC")
CUSTOM = "custom"
WINDOW_TIP = (
    "CT window (width / level, Hounsfield units) the encoder sees; the image is not "
    f"changed. auto: an existing cache's own; else {AUTO_CT_WINDOW} for a CT-like image "
    f"(signed integers or floats, lowest value {CT_LOWEST[0]:g} to {CT_LOWEST[1]:g}, "
    f"spanning {CT_SPAN:g} or more); else none. none: the image's own range (percentiles)"
)
RANGE_TIP = (
    "a fixed intensity range (low, high) the encoder sees, instead of a CT window; "
    "auto: the CT window setting decides"
)


class SettingsForm:
    """The settings fields of the dock widget of `viewer`, in two magicgui forms."""

    def __init__(self, viewer: napari.Viewer) -> None:
        # The default model first, then the others by name.
        models = sorted(MODELS, key=lambda name: (name != DEFAULT_MODEL, name))
        self.model = ComboBox(name="model", label="Model", choices=models, value=DEFAULT_MODEL)
        self.checkpoint = _path_field(
            "checkpoint", "Checkpoint", "r", "optional: a checkpoint file (overrides the model)"
        )
        # Choices from this widget's own viewer: napari's layer annotations would look the
        # viewer up among the Qt parents, which a widget not (yet) docked does not have.
        self.image = ComboBox(
            name="image",
            label="Image layer",
            choices=lambda _widget: [(lyr.name, lyr) for lyr in viewer.layers if _is_image(lyr)],
        )
        self.cache = _path_field("cache", "Cache", "d", "optional: cache.zarr (default: in memory)")
        self.device = ComboBox(
            name="device", label="Device", choices=DEVICES, tooltip="auto: CUDA, MPS, CPU"
        )
        self.axes = ComboBox(
            name="axes",
            label="Axes",
            choices=AXES,
            tooltip="auto: 2D (YX), RGB (YXC) or a volume (ZYX)",
        )
        self.tile_size = AutoInt(
            name="tile_size",
            label="Tile size",
            minimum=1,
            maximum=8192,
            default=1024,  # SAM's input size: where the number starts once auto is unticked
            tooltip="auto: the cache's tile size, else the model's input size",
        )
        self.halo = AutoInt(
            name="halo",
            label="Halo",
            minimum=0,
            maximum=1024,
            default=DEFAULT_HALO,
            tooltip="context shared by neighbouring tiles, in pixels; "
            f"auto: the cache's halo, else {DEFAULT_HALO}",
        )
        self.window = WindowChoice(name="window", label="CT window", tooltip=WINDOW_TIP)
        self.intensity = AutoRange(name="intensity", label="Intensity range", tooltip=RANGE_TIP)
        # A fixed range replaces the window: the window is not asked for meanwhile.
        self.intensity.changed.connect(lambda: self._window_enabled())
        self.main = Container(
            widgets=[self.model, self.checkpoint, self.image, self.cache, self.window]
        )
        self.advanced = Container(
            widgets=[self.device, self.axes, self.tile_size, self.halo, self.intensity]
        )

    def _window_enabled(self) -> None:
        self.window.enabled = self.intensity.value is None

    def settings(self) -> Settings:
        """The fields as `Settings`."""
        return Settings(
            model=self.model.value,
            checkpoint=_path_text(self.checkpoint.value),
            device=_unless_auto(self.device.value),
            cache=_path_text(self.cache.value),
            tile_size=self.tile_size.value,
            halo=self.halo.value,
            axes=_unless_auto(self.axes.value),
            window=self.window.value if self.intensity.value is None else None,
            intensity=self.intensity.value,
        )

    def set_settings(self, settings: Settings) -> None:
        """Fill the fields from `settings` (e.g. from a script)."""
        self.model.value = settings.model
        self.checkpoint.value = settings.checkpoint
        self.device.value = settings.device or AUTO
        self.cache.value = settings.cache
        self.tile_size.value = settings.tile_size
        self.halo.value = settings.halo
        self.axes.value = settings.axes or AUTO
        self.window.value = settings.window
        self.intensity.value = settings.intensity


def _is_image(layer: object) -> bool:
    return isinstance(layer, Image)


def _path_field(name: str, label: str, mode: str, placeholder: str) -> FileEdit:
    """A path with a browse button; empty means None."""
    field = FileEdit(name=name, label=label, mode=mode, nullable=True)
    if mode == "r":
        field.filter = "Checkpoints (*.pt *.pth)"
    field.line_edit.native.setPlaceholderText(placeholder)
    return field


def _path_text(path: str | PathLike[str] | None) -> str | None:
    text = "" if path is None else str(path).strip()
    return text or None


def _unless_auto(choice: str) -> str | None:
    return None if choice == AUTO else choice


class TickedNumbers(ValuedContainerWidget[Any]):
    """Numbers, or None while a box is ticked ("auto": the core chooses; "off": a rule is
    not applied), the numbers greyed out meanwhile.

    Its own widget because magicgui's spin boxes cannot show a special value such as "auto".
    A subclass says how its numbers read and show a value (``_read``, ``_show``).
    """

    def __init__(self, box: CheckBox, numbers: list[Any], **kwargs: Any) -> None:
        self.box, self.numbers = box, numbers
        for number in numbers:
            number.enabled = not box.value
        super().__init__(
            widgets=[box, *numbers], layout="horizontal", labels=False, nullable=True, **kwargs
        )
        self.margins = (0, 0, 0, 0)
        box.changed.connect(self._ticked)
        for number in numbers:
            number.changed.connect(lambda: self.changed.emit(self.value))

    def get_value(self) -> Any:
        """None while the box is ticked, else the numbers' value."""
        return None if self.box.value else self._read()

    def set_value(self, value: Any) -> None:
        """None ticks the box; a value unticks it and shows the numbers."""
        if value is not None:
            self._show(value)
        self.box.value = value is None

    def _ticked(self, ticked: bool) -> None:
        for number in self.numbers:
            number.enabled = not ticked
        self.changed.emit(self.value)

    def _read(self) -> Any:
        raise NotImplementedError

    def _show(self, value: Any) -> None:
        raise NotImplementedError


class AutoInt(TickedNumbers):
    """A whole number, or None (the "auto" box ticked: the core chooses), e.g. a halo."""

    def __init__(
        self, *, minimum: int, maximum: int, default: int, tooltip: str, **kwargs: Any
    ) -> None:
        self.auto = CheckBox(text=AUTO, value=True, tooltip=tooltip)
        self.number = SpinBox(min=minimum, max=maximum, value=default, tooltip=tooltip)
        super().__init__(self.auto, [self.number], **kwargs)

    def _read(self) -> int:
        return self.number.value

    def _show(self, value: int) -> None:
        self.number.value = value


class WindowChoice(ValuedContainerWidget[str | tuple[float, float] | None]):
    """A CT window: auto (None), none, a preset of `CT_WINDOWS` or a custom (width, level),
    whose two numbers show only for custom."""

    def __init__(self, *, tooltip: str, **kwargs: Any) -> None:
        presets = [(f"{name} ({w:g} / {lvl:g})", name) for name, (w, lvl) in CT_WINDOWS.items()]
        self.choice = ComboBox(
            choices=[(AUTO, AUTO), (NO_WINDOW, NO_WINDOW), *presets, ("custom W / L", CUSTOM)],
            value=AUTO,
            tooltip=tooltip,
        )
        width, level = CT_WINDOWS[AUTO_CT_WINDOW]  # where custom starts
        self.window_width = FloatSpinBox(
            min=1, max=10_000, value=width, tooltip="window width (HU)"
        )
        self.window_level = FloatSpinBox(min=-5_000, max=5_000, value=level, tooltip="level (HU)")
        super().__init__(
            widgets=[self.choice, self.window_width, self.window_level],
            layout="horizontal",
            labels=False,
            nullable=True,
            **kwargs,
        )
        self.margins = (0, 0, 0, 0)
        for part in (self.choice, self.window_width, self.window_level):
            part.changed.connect(self._changed)
        self._show_custom()

    def get_value(self) -> str | tuple[float, float] | None:
        """None for auto, ``(width, level)`` for custom, else the name (or "none")."""
        choice = self.choice.value
        if choice == CUSTOM:
            return (float(self.window_width.value), float(self.window_level.value))
        return None if choice == AUTO else choice

    def set_value(self, value: str | tuple[float, float] | None) -> None:
        """None is auto; a name or "none" is chosen; ``(width, level)`` is custom."""
        if value is None or isinstance(value, str):
            self.choice.value = value or AUTO
        else:
            self.window_width.value, self.window_level.value = (float(v) for v in value)
            self.choice.value = CUSTOM

    def _changed(self) -> None:
        self._show_custom()
        self.changed.emit(self.value)

    def _show_custom(self) -> None:
        custom = self.choice.value == CUSTOM
        self.window_width.visible = self.window_level.visible = custom


class AutoRange(TickedNumbers):
    """A fixed ``(low, high)`` intensity range, or None (the "auto" box ticked)."""

    def __init__(self, *, tooltip: str, **kwargs: Any) -> None:
        self.auto = CheckBox(text=AUTO, value=True, tooltip=tooltip)
        limits = {"min": -1e9, "max": 1e9, "tooltip": tooltip}
        self.low = FloatSpinBox(value=0.0, **limits)
        self.high = FloatSpinBox(value=255.0, **limits)
        for number in (self.low, self.high):
            number.native.setDecimals(3)  # float images often span 0..1
        super().__init__(self.auto, [self.low, self.high], **kwargs)

    def _read(self) -> tuple[float, float]:
        return (float(self.low.value), float(self.high.value))

    def _show(self, value: tuple[float, float]) -> None:
        self.low.value, self.high.value = (float(v) for v in value)
