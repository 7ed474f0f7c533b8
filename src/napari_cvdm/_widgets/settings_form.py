"""Widget controls generated from a settings model, so a control's default, limits and tooltip are the field's.

The settings objects in :mod:`napari_cvdm.settings` are the one place where a job's defaults and limits live: the
CLI makes its flags from them (:mod:`napari_cvdm.cli.flags`), YAML configs validate against them, and the widgets
make their controls here.  A widget only chooses which fields it shows, their labels and display details (a spin
step, the choices of a free-text field); a value the control cannot hold reaches the settings model, whose
validation error names the field and its limit.

Field types → controls: ``int`` → spin box (``int | None`` shows ``None`` as 0, labelled "0 = auto" by the widget);
``float`` → a text field that takes ``1e-4`` (or a spin box for fractions in [0, 1]; ``float | None``: empty is
None, and a text that is no number, e.g. a length with its unit "108nm", goes to the settings model to parse);
``Literal`` → combo box; ``bool`` → check box; ``str`` → combo box when the widget gives choices, else a text field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..tasks import InputError

INT_LIMIT = 2**31 - 1  # Qt spin boxes hold 32-bit integers


def _bounds(info: FieldInfo) -> tuple[float | None, float | None, bool, bool]:
    """(lower, upper, lower is strict, upper is strict) from the field's ge/gt/le/lt constraints."""
    low = high = None
    low_strict = high_strict = False
    for item in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is None:
                continue
            if name in ("ge", "gt"):
                low, low_strict = value, name == "gt"
            else:
                high, high_strict = value, name == "lt"
    return low, high, low_strict, high_strict


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None`` and whether ``None`` is allowed (``int | None`` → (int, True))."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class SettingsForm:
    """Controls for some fields of ``model``; :meth:`values` gives the keyword arguments of the settings object."""

    def __init__(
        self,
        model: type[BaseModel],
        labels: dict[str, str],
        *,
        choices: dict[str, Sequence[str]] | None = None,
        steps: dict[str, int] | None = None,
        spin_fractions: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.controls: dict[str, ValueWidget] = {}
        self._none_as_zero: set[str] = set()
        self._text_numbers: set[str] = set()
        self._optional_text: set[str] = set()  # float | None: empty is None, a unit is the model's to parse
        choices, steps = choices or {}, steps or {}
        for name, label in labels.items():
            info = model.model_fields[name]
            self.controls[name] = self._control(name, label, info, choices.get(name), steps.get(name), spin_fractions)
            tip = info.description or ""
            self.controls[name].tooltip = tip.replace("(None:", "(0:") if name in self._none_as_zero else tip

    def _control(
        self,
        name: str,
        label: str,
        info: FieldInfo,
        choices: Sequence[str] | None,
        step: int | None,
        spin_fractions: Sequence[str],
    ) -> ValueWidget:
        kind, optional = _base_type(info.annotation)
        default = info.get_default(call_default_factory=True)
        low, high, low_strict, high_strict = _bounds(info)
        if kind is bool:
            return CheckBox(text=label, value=bool(default))
        if typing.get_origin(kind) is typing.Literal:
            options = list(typing.get_args(kind))
            return ComboBox(label=label, choices=options, value=default if default is not None else options[0])
        if kind is int:
            lowest = int(low) + low_strict if low is not None else -INT_LIMIT
            highest = int(high) - high_strict if high is not None else INT_LIMIT
            if optional:
                self._none_as_zero.add(name)
                lowest = min(lowest, 0)
            value = 0 if default is None else int(default)
            return SpinBox(label=label, value=value, min=lowest, max=highest, step=step or 1)
        if kind is float and name in spin_fractions:
            top = float(high) if high is not None else 1.0
            top = top - 0.05 if high_strict else top
            return FloatSpinBox(label=label, value=float(default), min=float(low or 0.0), max=top, step=0.05)
        if kind is float:
            (self._optional_text if optional else self._text_numbers).add(name)
            return LineEdit(label=label, value="" if default is None else f"{default:g}")
        if kind is str and choices is not None:
            return ComboBox(label=label, choices=list(choices), value=default)
        if kind is str:
            return LineEdit(label=label, value=default or "")
        raise TypeError(f"{self.model.__name__}.{name}: no control for fields of type {info.annotation!r}")

    def __getitem__(self, name: str) -> ValueWidget:
        return self.controls[name]

    @property
    def widgets(self) -> list[ValueWidget]:
        return list(self.controls.values())

    def values(self) -> dict[str, Any]:
        """The controls' values as settings fields (0 → None where the field allows None; text → float).

        A text that is no number raises :class:`InputError` naming the control; limits are the settings
        model's to check (its ``ValidationError`` names the field).
        """
        out: dict[str, Any] = {}
        for name, control in self.controls.items():
            value = control.value
            if name in self._none_as_zero and value == 0:
                value = None
            elif name in self._optional_text:  # e.g. a length: "0.108" or "108nm", parsed by the settings model
                text = str(value).strip()
                value = None if not text else _number_or_text(text)
            elif name in self._text_numbers:
                text = str(value).strip()
                try:
                    value = float(text)
                except ValueError:
                    label = getattr(control, "label", name)
                    raise InputError(f"invalid setting: {label} must be a number like 1e-4, not {text!r}") from None
            out[name] = value
        return out

    def defaults(self) -> dict[str, Any]:
        """The settings model's defaults for the shown fields (what a fresh form holds)."""
        return {name: self.model.model_fields[name].get_default(call_default_factory=True) for name in self.controls}
