"""The project's names written as strings, each built and parsed here only.

- **Model ids** ``{variant}_lg{λ_g:g}_s{seed}`` (``is+ts_lg0.01_s0``): the folder of a trained
  model under ``models/`` and ``predictions/``, the Snakemake wildcard ``{model}``.  The models
  that differ only by their seed form a **group** ``{variant}_lg{λ_g:g}`` (``is+ts_lg0.01``):
  the seed ensemble of one input variant and one λ_g.  :class:`ModelId` and :class:`Group`
  build and parse both; :data:`MODEL_ID_PATTERN` is the same format as a regular expression
  (the Snakefile's wildcard constraint).
- **Validation columns** of ``metrics.csv``: ``val_{quantity}`` over every validation
  temperature and ``val_{quantity}_T{label}`` at one (``val_pearson_T0.44``,
  ``val_loss_mse_T0.80``); :func:`validation_column` builds them, :func:`parse_validation_column`
  and :func:`validation_temperatures` read them.

Light on purpose (the standard library and :mod:`tbotan.errors`): ``workflow/rules/common.smk``
imports it through :mod:`tbotan.config` before any job runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tbotan.errors import NameFormatError

__all__ = [
    "GROUP_PATTERN",
    "MODEL_ID_PATTERN",
    "VARIANTS",
    "Group",
    "ModelId",
    "NameFormatError",
    "model_id",
    "parse_validation_column",
    "validation_column",
    "validation_temperatures",
]

#: Input variants of T-BOTAN (docs/physics.md §6): the graph's edge features from the inherent
#: and the thermal structure, the inherent structure alone, the thermal structure alone.
VARIANTS = ("is+ts", "is", "ts")

_VARIANT = "|".join(re.escape(v) for v in VARIANTS)
_NUMBER = r"[0-9.eE+-]+"
#: A group id ``{variant}_lg{λ_g}`` as a regular expression (no anchors, no groups).
GROUP_PATTERN = rf"(?:{_VARIANT})_lg{_NUMBER}"
#: A model id ``{variant}_lg{λ_g}_s{seed}`` as a regular expression (no anchors, no groups):
#: the Snakefile's constraint of the wildcard ``{model}``.
MODEL_ID_PATTERN = rf"{GROUP_PATTERN}_s\d+"

_GROUP_RE = re.compile(rf"^({_VARIANT})_lg({_NUMBER})$")
_MODEL_RE = re.compile(rf"^({_VARIANT})_lg({_NUMBER})_s(\d+)$")


def _lambda_global(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise NameFormatError(f"{name!r}: λ_g {text!r} is not a number") from exc


@dataclass(frozen=True)
class Group:
    """The models that differ only by their seed (one input variant, one λ_g): a seed ensemble.

    Its name is ``{variant}_lg{λ_g:g}``; two groups are equal when their names are (λ_g = 0.01
    and 0.010 are one group).
    """

    variant: str
    lambda_global: float

    @property
    def name(self) -> str:
        return f"{self.variant}_lg{float(self.lambda_global):g}"

    def member(self, seed: int) -> ModelId:
        """The model of this group trained with ``seed``."""
        return ModelId(self.variant, self.lambda_global, int(seed))

    @staticmethod
    def parse(name: str) -> Group:
        """From a group id such as ``is+ts_lg0.01``; :class:`NameFormatError` when it is not one."""
        match = _GROUP_RE.match(name)
        if match is None:
            raise NameFormatError(
                f"{name!r} is not a group id of the form {{variant}}_lg{{lambda_g}} with variant "
                f"in {VARIANTS}"
            )
        variant, lg = match.groups()
        return Group(variant, _lambda_global(name, lg))

    def __eq__(self, other) -> bool:
        return isinstance(other, Group) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)


@dataclass(frozen=True)
class ModelId:
    """One trained model: input variant, λ_g and seed; its name is ``{variant}_lg{λ_g:g}_s{seed}``
    (its group's name and the seed)."""

    variant: str
    lambda_global: float
    seed: int

    @property
    def group(self) -> Group:
        return Group(self.variant, self.lambda_global)

    @property
    def name(self) -> str:
        return f"{self.group.name}_s{int(self.seed)}"

    @staticmethod
    def parse(name: str) -> ModelId:
        """From a model id such as ``is+ts_lg0.01_s0``; :class:`NameFormatError` when it is not
        one."""
        match = _MODEL_RE.match(name)
        if match is None:
            raise NameFormatError(
                f"{name!r} is not a model id of the form {{variant}}_lg{{lambda_g}}_s{{seed}} "
                f"with variant in {VARIANTS}"
            )
        variant, lg, seed = match.groups()
        return ModelId(variant, _lambda_global(name, lg), int(seed))


def model_id(variant: str, lambda_global: float, seed: int) -> str:
    """The model id ``{variant}_lg{λ_g:g}_s{seed}``, e.g. ``is+ts_lg0.01_s0``."""
    return ModelId(variant, lambda_global, seed).name


# ---------------------------------------------------------------------------- metrics columns

#: Prefix of every validation column of metrics.csv.
VALIDATION_PREFIX = "val_"
_PER_TEMPERATURE_RE = re.compile(r"^val_(.+)_T([0-9][0-9.eE+-]*)$")


def validation_column(quantity: str, temperature_label: str | None = None) -> str:
    """The metrics.csv column of a validation ``quantity`` (``pearson``, ``t_pred``,
    ``loss_mse``, ...): ``val_{quantity}`` over all validation temperatures, or
    ``val_{quantity}_T{label}`` at the temperature of label ``temperature_label``
    (:func:`tbotan.config.temperature_label`)."""
    if temperature_label is None:
        return f"{VALIDATION_PREFIX}{quantity}"
    return f"{VALIDATION_PREFIX}{quantity}_T{temperature_label}"


def parse_validation_column(column: str) -> tuple[str, str] | None:
    """(quantity, temperature label) of a per-temperature validation column
    ``val_{quantity}_T{label}``; None for any other column."""
    match = _PER_TEMPERATURE_RE.match(column)
    return None if match is None else (match.group(1), match.group(2))


def validation_temperatures(columns: Iterable[str], quantities: Iterable[str]) -> list[str]:
    """Temperature labels, ascending, at which ``columns`` hold a validation column of any of
    ``quantities``."""
    wanted = set(quantities)
    labels = {
        parsed[1]
        for parsed in map(parse_validation_column, columns)
        if parsed is not None and parsed[0] in wanted
    }
    return sorted(labels, key=float)
