"""Forms built from a table of fields: one row per input, magicgui widgets out.

A new option (a "3D" switch, a Z patch size, an N2V2 checkbox) is one more
:class:`Field` row in a table; the form builds the widget, gives it its default from
the config, groups it into its section and reads it back into the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from magicgui.widgets import ComboBox, Container, LineEdit
from magicgui.widgets.bases import ValueWidget
from napari.layers import Layer

from ..core import DataError, available_devices
from ._layers import check_layer, guess_axes, image_choices

__all__ = ["Field", "Form", "axes_field", "device_field", "image_field"]


@dataclass(frozen=True)
class Field:
    """One input of a form.

    Parameters
    ----------
    name : str
        Attribute name of the widget on the form (``form.<name>``).
    widget : type
        magicgui value widget class (``SpinBox``, ``ComboBox``, ``CheckBox``...).
    label : str
        Text shown next to the widget.
    options : mapping
        Further keyword arguments for the widget (``min``, ``max``, ``tooltip``...).
    config : str, optional
        Name of the config field the widget sets; its default value comes from the
        form's ``defaults`` object unless ``options`` gives a ``value``.
    parse : callable, optional
        Turns the widget's value into the config value (may raise ``ConfigError``).
    choices : callable, optional
        ``choices(viewer)`` gives a choice widget's options; called again on every
        ``reset_choices()``, which napari drives on layer changes.
    section : str
        Which container the widget goes in (e.g. "main", "advanced").
    """

    name: str
    widget: type[ValueWidget]
    label: str
    options: Mapping[str, Any] = field(default_factory=dict)
    config: str | None = None
    parse: Callable[[Any], Any] | None = None
    choices: Callable[[Any], list] | None = None
    section: str = "main"

    @classmethod
    def setting(
        cls, name: str, widget: type[ValueWidget], label: str, section: str = "main", **options: Any
    ) -> Field:
        """A row whose widget sets the config field of the same name (no parsing)."""
        return cls(name, widget, label, options, config=name, section=section)


class Form:
    """The widgets of a :class:`Field` table, one magicgui ``Container`` per section.

    Widgets are reached as ``form.<name>``; :meth:`config_values` reads the rows that
    set a config field. A form with ``image`` and ``axes`` rows guesses the axes
    whenever the image changes.
    """

    def __init__(self, fields: Iterable[Field], viewer: Any, defaults: object | None = None):
        self.fields: dict[str, Field] = {}
        self.widgets: dict[str, ValueWidget] = {}
        grouped: dict[str, list[ValueWidget]] = {}
        for f in fields:
            options = dict(f.options)
            if f.choices is not None:
                options["choices"] = _bind_choices(f.choices, viewer)
            if f.config is not None and defaults is not None:
                options.setdefault("value", getattr(defaults, f.config))
            widget = f.widget(name=f.name, label=f.label, **options)
            self.fields[f.name] = f
            self.widgets[f.name] = widget
            grouped.setdefault(f.section, []).append(widget)
        self.sections = {name: Container(widgets=ws) for name, ws in grouped.items()}
        if "image" in self.widgets and "axes" in self.widgets:
            self.widgets["image"].changed.connect(self._on_image_changed)
            self._on_image_changed(self.widgets["image"].value)

    def __getattr__(self, name: str) -> Any:
        widgets = self.__dict__.get("widgets", {})
        if name in widgets:
            return widgets[name]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def config_values(self) -> dict[str, Any]:
        """``{config field: value}`` for every field that sets one."""
        out = {}
        for name, f in self.fields.items():
            if f.config is not None:
                value = self.widgets[name].value
                out[f.config] = f.parse(value) if f.parse is not None else value
        return out

    def reset_choices(self, *_args: Any) -> None:
        """Refresh every choice widget (layer pickers, model lists)."""
        for container in self.sections.values():
            container.reset_choices()

    def image_and_axes(self) -> tuple[Layer, str]:
        """The chosen image layer and its axes; raises ``DataError`` if unusable."""
        layer = self.widgets["image"].value
        check_layer(layer)
        axes = (self.widgets["axes"].value or "").strip().upper() or guess_axes(layer)
        if not axes:
            raise DataError("enter the axes of the image (e.g. YX or TYX)")
        return layer, axes

    def _on_image_changed(self, layer: Layer | None) -> None:
        axes = guess_axes(layer)
        if axes:
            self.widgets["axes"].value = axes


def _bind_choices(choices: Callable[[Any], list], viewer: Any) -> Callable[[Any], list]:
    def bound(_widget: Any = None) -> list:
        return choices(viewer)

    return bound


# -- rows the train and apply forms share ---------------------------------------------


def image_field(tooltip: str) -> Field:
    return Field("image", ComboBox, "Image", {"tooltip": tooltip}, choices=image_choices)


def axes_field(tooltip: str = "") -> Field:
    return Field("axes", LineEdit, "Axes", {"tooltip": tooltip} if tooltip else {})


def device_field(section: str = "main") -> Field:
    return Field(
        "device",
        ComboBox,
        "Device",
        {"choices": ["auto", *available_devices()], "value": "auto"},
        config="device",
        parse=str,
        section=section,
    )
