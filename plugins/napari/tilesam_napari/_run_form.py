"""How *Segment everything* and *Propagate 3D* run: the mode, the grid's density, the
walk's stop rules and whether the gaps it leaves between annotations are interpolated,
magicgui fields of the dock widget's advanced settings.

Unlike `SettingsForm`'s fields (what a session is opened with: changing one opens another),
these are read at each run and handed to the core as they are: ``mode`` and
``points_per_side`` to `tilesam.Session.segment_everything`, the stop rules as
``rules={...}`` (checked there by `tilesam.volumes.stop_rules.StopRules.of`) and
``fill_gaps`` to `tilesam.propagate_mask`. Their defaults are the core's: "auto" mode is
`tilesam.automatic.api.default_mode` for the model at hand, each threshold starts at
its `StopRules` default, and ``fill_gaps`` at `propagate_mask`'s.
"""

from __future__ import annotations

import inspect
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, SpinBox

from tilesam.automatic.settings import MODES
from tilesam.volumes.propagate import propagate_mask
from tilesam.volumes.stop_rules import StopRules, may_be_off
from tilesam_napari._settings_form import AUTO, AutoInt, TickedNumbers

OFF = "off"
GRID = "grid"
MODE_TIP = (
    "Segment everything: instance (the model's instance head and a watershed), prompts "
    "(the head's seeds clicked and decoded) or grid (a grid of clicks, any model); auto: "
    "instance for a model with an instance head (tiny ships one), else grid"
)
GRID_TIP = (
    "Segment everything, grid mode only (ignored by instance and prompts): grid points per "
    "side of the model input (fewer: faster, small objects missed); auto: the core's default"
)
#: Each stop rule's field: the `StopRules` name, label, range (the core's), step and when
#: it stops a walk; its default, and whether it may be off, are read from `StopRules`.
RULES = (
    ("min_area", "Min area", 0, 10**9, 1, "the mask has fewer pixels than this (vanished)"),
    (
        "min_score",
        "Min score",
        0.0,
        1.0,
        0.05,
        "the predicted IoU is below this (what it means depends on the model and the prompt)",
    ),
    (
        "min_score_ratio",
        "Min score ratio",
        0.01,
        1.0,
        0.05,
        "the predicted IoU falls below this fraction of the walk's highest (less sure)",
    ),
    (
        "min_overlap",
        "Min overlap",
        0.0,
        1.0,
        0.05,
        "the mask's IoU with the previous slice's is below this (it jumped)",
    ),
    (
        "max_growth",
        "Max growth",
        1.0,
        1e6,
        0.1,
        "the mask's area exceeds this many times the previous slice's (a leak)",
    ),
    (
        "min_contrast",
        "Min contrast",
        0.0,
        1.0,
        0.05,
        "the object's contrast with its surroundings falls below this fraction of the "
        "walk's strongest (it faded; distinct objects only)",
    ),
)
FILL_TIP = (
    "Propagate 3D: where the walks from two annotated slices of an object both stop before "
    "they meet, interpolate the slices left between them from the walks' last masks (the "
    "notification says which); off: leave them empty"
)
#: Where the number of a rule that is off by default starts once "off" is unticked.
OFF_START = 0.5


class RunForm:
    """The run options of the dock widget: ``everything`` (mode, grid points) and
    ``propagation`` (one field per stop rule, named after it, and ``fill_gaps``), two
    magicgui forms."""

    def __init__(self) -> None:
        self.mode = ComboBox(
            name="mode", label="Mode", choices=(AUTO, *MODES), value=AUTO, tooltip=MODE_TIP
        )
        self.grid_points = AutoInt(
            name="points_per_side",
            label="Grid points",
            minimum=1,
            maximum=256,
            default=32,  # where the number starts: the core's default, SAM's
            tooltip=GRID_TIP,
        )
        self.mode.changed.connect(self._grid_enabled)
        defaults = StopRules()
        self.rules_fields = {
            name: _rule_field(name, label, low, high, step, tip, getattr(defaults, name))
            for name, label, low, high, step, tip in RULES
        }
        everything = Label(value="Segment everything")
        self.everything = Container(widgets=[everything, self.mode, self.grid_points])
        self.fill_gaps = CheckBox(
            name="fill_gaps",
            text="Fill gaps between annotations",
            value=inspect.signature(propagate_mask).parameters["fill_gaps"].default,
            tooltip=FILL_TIP,
        )
        propagation = Label(value="Propagate 3D: stop rules (see tooltips)")
        fields = [propagation, *self.rules_fields.values(), self.fill_gaps]
        self.propagation = Container(widgets=fields)

    def everything_options(self) -> dict[str, Any]:
        """``mode`` (None for auto) and ``points_per_side`` (None for auto) for
        `tilesam_napari._predict.everything_steps`."""
        mode = None if self.mode.value == AUTO else self.mode.value
        return {"mode": mode, "points_per_side": self.grid_points.value}

    def rules(self) -> dict[str, float | None]:
        """The stop rules as ``propagate_mask(rules=...)`` takes them (None: off)."""
        return {name: field.value for name, field in self.rules_fields.items()}

    def propagation_options(self) -> dict[str, Any]:
        """``rules`` and ``fill_gaps`` for `tilesam.propagate_mask`."""
        return {"rules": self.rules(), "fill_gaps": self.fill_gaps.value}

    def set_rules(self, rules: StopRules | dict[str, float | None] | None) -> None:
        """Fill the rule fields from `rules` (None: the core's defaults; a mapping changes
        the rules it names, as `StopRules.of` reads it)."""
        rules = StopRules.of(rules)
        for name, field in self.rules_fields.items():
            field.value = getattr(rules, name)

    def _grid_enabled(self) -> None:
        self.grid_points.enabled = self.mode.value in (AUTO, GRID)


def _rule_field(
    name: str, label: str, low: float, high: float, step: float, tip: str, default: Any
) -> Any:
    """A stop rule's field: a number, with an "off" box where the rule may be off."""
    shown = OFF if default is None else default
    tooltip = f"The walk stops where {tip}; the core's default: {shown}"
    if may_be_off(name):
        return OffNumber(
            name=name,
            label=label,
            minimum=low,
            maximum=high,
            step=step,
            value=default,
            tooltip=tooltip + " (off: the rule is not applied)",
        )
    if isinstance(default, int):
        return SpinBox(name=name, label=label, min=low, max=high, value=default, tooltip=tooltip)
    return FloatSpinBox(
        name=name, label=label, min=low, max=high, step=step, value=default, tooltip=tooltip
    )


class OffNumber(TickedNumbers):
    """A threshold, or None (the "off" box ticked: its rule is not applied)."""

    def __init__(
        self,
        *,
        minimum: float,
        maximum: float,
        step: float,
        value: float | None,
        tooltip: str,
        **kwargs: Any,
    ) -> None:
        self.off = CheckBox(text=OFF, value=value is None, tooltip=tooltip)
        start = OFF_START if value is None else value
        self.number = FloatSpinBox(
            min=minimum, max=maximum, step=step, value=start, tooltip=tooltip
        )
        super().__init__(self.off, [self.number], **kwargs)

    def _read(self) -> float:
        return float(self.number.value)

    def _show(self, value: float) -> None:
        self.number.value = value
