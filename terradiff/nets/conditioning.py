"""Class and metadata conditioning of a denoiser through its time embedding.

What a conditional denoiser sees besides ``x_t`` and ``t`` (DiffusionSat, Khanna et al. 2024,
"DiffusionSat: A Generative Foundation Model for Satellite Imagery", Sec. 3):

* a **class** label, embedded by a learned table and added to the time embedding, as in the
  class-conditional ImageNet models of Dhariwal & Nichol (2021, "Diffusion Models Beat GANs",
  Sec. 3: the residual blocks' adaptive group norm projects "the timestep and class
  embedding");
* numeric **metadata** (longitude, latitude, ground sampling distance, cloud cover, date, ...):
  each value is embedded sinusoidally like a timestep, projected by its own 2-layer MLP and added
  to the time embedding (DiffusionSat, Sec. 3).

For classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Sec. 3.2
and Algorithm 1) the same net must also model the *unconditional* distribution, so every input
has a learned **null** value: a null class row and, per metadata field, a null vector used where
the field is missing. Training replaces the condition by null with probability ``p_uncond``
(:meth:`Condition.with_dropped`); sampling mixes the conditional and null predictions
(:func:`terradiff.diffusion.guidance.guided`).

The pieces: :class:`ConditionSpec` (what a net is conditioned on; JSON in the net's config),
:class:`Condition` (the per-batch values), :class:`ClassEmbedding`, :class:`MetadataEmbedding`
and :class:`ConditionEmbedding` (both together; what :class:`~terradiff.nets.unet.UNet` adds to its
time embedding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from terradiff.nets.blocks import timestep_embedding

__all__ = [
    "NULL_LABEL",
    "ClassEmbedding",
    "Condition",
    "ConditionEmbedding",
    "ConditionSpec",
    "MetadataEmbedding",
    "check_condition",
]

NULL_LABEL = -1
"""The class label that means "no class" (the learned null row of :class:`ClassEmbedding`)."""


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class ConditionSpec:
    """What a net is conditioned on; stored as JSON in the net's config.

    Attributes:
        num_classes: Number of classes (labels ``0 .. num_classes - 1``); 0 = no class input.
        metadata_fields: Names of the numeric metadata fields, in the column order of
            :attr:`Condition.metadata`; empty = no metadata input.
    """

    num_classes: int = 0
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {n!r}")
        if isinstance(self.metadata_fields, str):
            raise ValueError(
                f"metadata_fields must be a sequence of names, got the string "
                f"{self.metadata_fields!r}; write ({self.metadata_fields!r},)"
            )
        fields = tuple(self.metadata_fields)
        bad = [f for f in fields if not isinstance(f, str) or not f]
        if bad:
            raise ValueError(f"metadata field names must be non-empty strings, got {bad!r}")
        dupes = sorted({f for f in fields if fields.count(f) > 1})
        if dupes:
            raise ValueError(f"metadata field names must be unique; repeated: {dupes}")
        object.__setattr__(self, "metadata_fields", fields)

    @property
    def enabled(self) -> bool:
        """True when the spec conditions on anything (classes or metadata)."""
        return self.num_classes > 0 or bool(self.metadata_fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (see :meth:`from_dict`)."""
        return {"num_classes": self.num_classes, "metadata_fields": list(self.metadata_fields)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionSpec:
        """Rebuild from :meth:`to_dict` (e.g. read back from a checkpoint's JSON).

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        unknown = sorted(set(data) - {"num_classes", "metadata_fields"})
        if unknown:
            raise ValueError(
                f"unknown condition spec keys {unknown}; expected num_classes, metadata_fields"
            )
        fields = data.get("metadata_fields", ())
        if isinstance(fields, str):
            raise ValueError(f"metadata_fields must be a list of names, got {fields!r}")
        return cls(num_classes=data.get("num_classes", 0), metadata_fields=tuple(fields))


# --------------------------------------------------------------------------- condition


@dataclass(frozen=True, eq=False)
class Condition:
    """The class and metadata condition of one batch (any part may be absent).

    Compared by identity (it holds tensors); compare its parts with ``torch.equal``.

    Attributes:
        labels: Long ``[B]``; ``-1`` (:data:`NULL_LABEL`) = no class for that sample. None = no
            class for the whole batch.
        metadata: Float ``[B, F]`` of normalised values, columns in the order of
            :attr:`ConditionSpec.metadata_fields`. None = every field missing for every sample.
        present: Bool ``[B, F]``: where ``metadata`` holds a value. Given ``metadata`` and no
            ``present``, a value is present where it is finite (so NaN marks a missing value);
            values where ``present`` is False are ignored (may be NaN).
    """

    labels: Tensor | None = None
    metadata: Tensor | None = None
    present: Tensor | None = None

    def __post_init__(self) -> None:
        labels, metadata, present = self.labels, self.metadata, self.present
        if labels is not None:
            if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
                raise ValueError(
                    f"labels must be an integer tensor [B], got {labels.dtype} "
                    f"{tuple(labels.shape)}"
                )
            if labels.dtype != torch.long:
                object.__setattr__(self, "labels", labels.long())
        if metadata is None:
            if present is not None:
                raise ValueError("present was given without metadata; give both or neither")
            return
        if metadata.ndim != 2 or not metadata.is_floating_point():
            raise ValueError(
                f"metadata must be a float tensor [B, F], got {metadata.dtype} "
                f"{tuple(metadata.shape)}"
            )
        if present is None:
            object.__setattr__(self, "present", torch.isfinite(metadata))
        elif present.dtype != torch.bool or present.shape != metadata.shape:
            raise ValueError(
                f"present must be a bool tensor shaped like metadata {tuple(metadata.shape)}, "
                f"got {present.dtype} {tuple(present.shape)}"
            )
        if labels is not None and labels.shape[0] != metadata.shape[0]:
            raise ValueError(
                f"labels ({labels.shape[0]}) and metadata ({metadata.shape[0]}) disagree on "
                "the batch size"
            )

    @property
    def batch_size(self) -> int | None:
        """``B``, or None when the condition holds no tensor."""
        for value in (self.labels, self.metadata):
            if value is not None:
                return int(value.shape[0])
        return None

    @property
    def num_fields(self) -> int | None:
        """``F`` of :attr:`metadata`, or None without metadata."""
        return None if self.metadata is None else int(self.metadata.shape[1])

    def rows(self, start: int, stop: int) -> Condition:
        """The condition of samples ``start .. stop - 1`` (a batch drawn in parts)."""

        def cut(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[start:stop]

        return Condition(cut(self.labels), cut(self.metadata), cut(self.present))

    def null_like(self, batch: int | None = None) -> Condition:
        """The all-null condition with the same parts (labels -1, every field missing).

        Args:
            batch: Its batch size (default: this condition's).
        """
        batch = self.batch_size if batch is None else batch
        labels = metadata = present = None
        if self.labels is not None:
            labels = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=self.labels.device)
        if self.metadata is not None:
            shape = (batch, self.metadata.shape[1])
            metadata = self.metadata.new_zeros(shape)
            present = torch.zeros(shape, dtype=torch.bool, device=self.metadata.device)
        return Condition(labels, metadata, present)

    @staticmethod
    def concat(a: Condition, b: Condition) -> Condition:
        """``a`` then ``b`` along the batch (one batched forward for guidance).

        A part that only one of them holds is null for the other's samples.

        Raises:
            ValueError: When a part must be filled with nulls for a condition that holds no
                tensor (its batch size is unknown), or the metadata widths differ.
        """
        if a.num_fields is not None and b.num_fields is not None and a.num_fields != b.num_fields:
            raise ValueError(f"cannot concat metadata of {a.num_fields} and {b.num_fields} fields")

        def part(c: Condition, other: Condition, name: str) -> Tensor:
            value = getattr(c, name)
            if value is not None:
                return value
            if c.batch_size is None:
                raise ValueError(
                    f"cannot concat: one condition has {name} and the other holds no tensor, so "
                    "its batch size is unknown; give it explicit null parts (null_like)"
                )
            return getattr(other.null_like(c.batch_size), name)

        labels = metadata = present = None
        if a.labels is not None or b.labels is not None:
            labels = torch.cat([part(a, b, "labels"), part(b, a, "labels")])
        if a.metadata is not None or b.metadata is not None:
            metadata = torch.cat([part(a, b, "metadata"), part(b, a, "metadata")])
            present = torch.cat([part(a, b, "present"), part(b, a, "present")])
        return Condition(labels, metadata, present)

    def to(self, device: torch.device | str) -> Condition:
        """The condition with its tensors on ``device``."""

        def move(value: Tensor | None) -> Tensor | None:
            return None if value is None else value.to(device)

        return Condition(move(self.labels), move(self.metadata), move(self.present))

    def with_dropped(self, drop_prob: float, generator: torch.Generator | None = None) -> Condition:
        """Condition dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1).

        Each sample's **whole** condition -- its class and its entire metadata vector together --
        becomes null with probability ``drop_prob`` (one draw per sample). Joint, not per part:
        guidance's unconditional branch is the all-null condition, which joint dropout trains with
        probability ``drop_prob`` (independent drops would train it only ``drop_prob**2`` of the
        time); DiffusionSat likewise drops the metadata vector together with the caption.

        The draws are ``torch.rand(B)`` on the CPU ``generator`` (None: the global CPU RNG), so
        a resumed run that restores the generator drops the same samples; exactly ``B`` numbers
        are drawn whatever ``drop_prob`` is (none when the condition holds no tensor).

        Raises:
            ValueError: ``drop_prob`` outside ``[0, 1]`` or a generator not on the CPU.
        """
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
        if generator is not None and torch.device(generator.device).type != "cpu":
            raise ValueError(
                f"with_dropped draws on a CPU generator (reproducible on any device), got one "
                f"on {generator.device}"
            )
        batch = self.batch_size
        if batch is None:
            return self
        drop = torch.rand(batch, generator=generator) < drop_prob
        labels = metadata = present = None
        if self.labels is not None:
            labels = self.labels.masked_fill(drop.to(self.labels.device), NULL_LABEL)
        if self.metadata is not None and self.present is not None:
            rows = drop.to(self.metadata.device)[:, None]
            metadata = self.metadata.masked_fill(rows, 0.0)
            present = self.present & ~rows
        return Condition(labels, metadata, present)


# --------------------------------------------------------------------------- embeddings


class ClassEmbedding(nn.Module):
    """Learned class table with one extra **null** row (index ``num_classes``).

    Label ``-1`` (:data:`NULL_LABEL`) or ``labels=None`` selects the null row, the "no class"
    input of classifier-free guidance (Ho & Salimans 2022, Sec. 3.2). Rows start as N(0, 1)
    (``nn.Embedding``'s default, also that of Dhariwal & Nichol's class embedding). Labels on the
    CPU are range-checked with a clear error; elsewhere the check would cost a host sync, so an
    out-of-range label fails inside the embedding lookup instead.

    Args:
        num_classes: Number of real classes.
        dim: Embedding width (the denoiser's time-embedding width).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: Tensor | None, batch: int | None = None) -> Tensor:
        """Long ``[B]`` labels (-1 = null), or None with ``batch`` -> ``[B, dim]``."""
        if labels is None:
            if batch is None:
                raise ValueError("give labels or, for an all-null batch, the batch size")
            device = self.table.weight.device
            labels = torch.full((batch,), NULL_LABEL, dtype=torch.long, device=device)
        if labels.device.type == "cpu" and labels.numel():  # checking costs no host sync here
            low, high = int(labels.min()), int(labels.max())
            if low < NULL_LABEL or high >= self.num_classes:
                raise ValueError(
                    f"class labels must be in [0, {self.num_classes - 1}] or {NULL_LABEL} "
                    f"(null), got values in [{low}, {high}]"
                )
        labels = labels.to(self.table.weight.device)
        return self.table(torch.where(labels == NULL_LABEL, self.num_classes, labels))


class MetadataEmbedding(nn.Module):
    """Per-field sinusoidal embedding + MLP of numeric metadata, summed over fields.

    DiffusionSat (Khanna et al. 2024, Sec. 3): field ``f``'s value ``v`` becomes
    ``MLP_f(sin_emb(value_scale * v))`` -- the timestep's sinusoidal features
    (:func:`~terradiff.nets.blocks.timestep_embedding`) and a ``Linear-SiLU-Linear`` MLP of its own
    -- and the fields' embeddings are summed. ``value_scale`` maps values normalised to about
    ``[-1, 1]`` (as :mod:`terradiff.data.metadata` normalises them) onto ``[-1000, 1000]``, the
    scale of the timesteps the sinusoids were made for (DiffusionSat normalises each field to
    ``[0, 1000]`` before the same projection); negative values are told apart by the sines.
    Where a field is missing its embedding is that field's learned **null** vector (zero at
    start).

    The ``F`` MLPs run as two batched matmuls (``einsum`` over stacked weights), initialised as
    ``nn.Linear`` is (uniform in ``+-1/sqrt(fan_in)``).

    Args:
        fields: Field names (their order is the column order of the values).
        dim: Output width (the denoiser's time-embedding width).
        sinusoid_dim: Width of the sinusoidal features (default ``dim // 4``, the UNet's base
            channels, as for the timestep).
        value_scale: Factor applied to the values before the sinusoidal embedding.
    """

    def __init__(
        self,
        fields: Sequence[str],
        dim: int,
        *,
        sinusoid_dim: int | None = None,
        value_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.fields = ConditionSpec(metadata_fields=tuple(fields)).metadata_fields
        if not self.fields:
            raise ValueError("MetadataEmbedding needs at least one field")
        n = len(self.fields)
        self.sinusoid_dim = sinusoid_dim or max(2, dim // 4)
        self.value_scale = float(value_scale)
        s = self.sinusoid_dim
        self.weight1 = nn.Parameter(_uniform((n, s, dim), s))
        self.bias1 = nn.Parameter(_uniform((n, dim), s))
        self.weight2 = nn.Parameter(_uniform((n, dim, dim), dim))
        self.bias2 = nn.Parameter(_uniform((n, dim), dim))
        self.null = nn.Parameter(torch.zeros(n, dim))

    def forward(
        self, values: Tensor | None, present: Tensor | None = None, batch: int | None = None
    ) -> Tensor:
        """Embed ``[B, F]`` values -> ``[B, dim]``.

        Args:
            values: Float ``[B, F]``, or None = every field missing (then give ``batch``).
            present: Bool ``[B, F]`` (default: where ``values`` is finite).
            batch: The batch size when ``values`` is None.
        """
        n = len(self.fields)
        device = self.null.device
        if values is None:
            if batch is None:
                raise ValueError("give values or, for an all-missing batch, the batch size")
            # The same arithmetic as for given values, so "None" and "all missing" agree bitwise.
            values = torch.zeros(batch, n, device=device)
            present = torch.zeros(batch, n, dtype=torch.bool, device=device)
        if values.ndim != 2 or values.shape[1] != n:
            raise ValueError(
                f"metadata must have shape [B, {n}] (fields {list(self.fields)}), got "
                f"{tuple(values.shape)}"
            )
        values = values.to(device, torch.float32)
        present = torch.isfinite(values) if present is None else present.to(device)
        if present.shape != values.shape:
            raise ValueError(
                f"present must be shaped like metadata {tuple(values.shape)}, got "
                f"{tuple(present.shape)}"
            )
        values = torch.where(present, values, 0.0)  # missing values may be NaN
        B = values.shape[0]
        sin = timestep_embedding(values.reshape(-1) * self.value_scale, self.sinusoid_dim)
        h = torch.einsum("bfs,fsd->bfd", sin.view(B, n, -1), self.weight1) + self.bias1
        h = torch.einsum("bfd,fde->bfe", F.silu(h), self.weight2) + self.bias2
        h = torch.where(present[:, :, None], h, self.null.to(h.dtype))
        return h.sum(dim=1)


def _uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): ``nn.Linear``'s default initialisation."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class ConditionEmbedding(nn.Module):
    """Class + metadata embedding of a :class:`ConditionSpec`: what a denoiser adds to its time
    embedding (Dhariwal & Nichol 2021, Sec. 4; DiffusionSat, Sec. 3).

    Args:
        spec: What to embed (must be :attr:`~ConditionSpec.enabled`).
        dim: Width of the time embedding.
        sinusoid_dim: Width of the metadata's sinusoidal features (the time's ``base_dim``).
    """

    def __init__(self, spec: ConditionSpec, dim: int, sinusoid_dim: int | None = None) -> None:
        super().__init__()
        if not spec.enabled:
            raise ValueError("ConditionEmbedding needs classes or metadata fields in its spec")
        self.spec = spec
        self.classes = ClassEmbedding(spec.num_classes, dim) if spec.num_classes else None
        self.metadata = (
            MetadataEmbedding(spec.metadata_fields, dim, sinusoid_dim=sinusoid_dim)
            if spec.metadata_fields
            else None
        )

    def forward(self, condition: Condition | None, batch: int) -> Tensor:
        """``condition`` (None = all null) of ``batch`` samples -> ``[batch, dim]``.

        Raises:
            ValueError: A part the spec does not have, or a batch size other than ``batch``.
        """
        condition = Condition() if condition is None else condition
        check_condition(condition, self.spec, batch)
        out: Tensor | None = None
        if self.classes is not None:
            out = self.classes(condition.labels, batch)
        if self.metadata is not None:
            meta = self.metadata(condition.metadata, condition.present, batch)
            out = meta if out is None else out + meta
        assert out is not None  # the spec is enabled
        return out


def check_condition(condition: Condition, spec: ConditionSpec | None, batch: int) -> None:
    """Raise a clear ValueError when ``condition`` does not fit a net of ``spec`` and ``batch``.

    ``spec`` None (or not enabled) is an unconditioned net, which accepts only an empty
    condition.
    """
    num_classes = 0 if spec is None else spec.num_classes
    fields = () if spec is None else spec.metadata_fields
    if condition.labels is not None and not num_classes:
        raise ValueError(
            "class labels were given but the net has no class input; build it with "
            "condition_spec=ConditionSpec(num_classes=...)"
        )
    if condition.metadata is not None and not fields:
        raise ValueError(
            "metadata was given but the net has no metadata input; build it with "
            "condition_spec=ConditionSpec(metadata_fields=(...))"
        )
    if condition.num_fields is not None and condition.num_fields != len(fields):
        raise ValueError(
            f"metadata has {condition.num_fields} fields, the net expects {len(fields)}: "
            f"{list(fields)}"
        )
    size = condition.batch_size
    if size is not None and size != batch:
        raise ValueError(f"the condition has batch size {size}, the input {batch}")
