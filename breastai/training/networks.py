"""Networks: the authors' spatial-temporal tumor network and a 3-D U-Net for the whole breast.

Tensor layout follows the axis contract in :mod:`breastai.study`: ``(B, C, D, H, W)`` =
``(batch, channel, z, y, x)``, float32.

:class:`SeedTumorNet` reproduces the network released with Zhang et al. (Patterns 2023) so that
the authors' checkpoint loads into it key for key (see ``docs/seed-model.md`` in the shared
documentation): a residual 3-D U-Net encoder shared by all phases (input per phase
``[P_i, P_i - P_0]``), a spatial and a temporal ViT encoder at the bottleneck whose outputs are
summed, and a residual decoder fed by the interleaved phase features (decoder channel
``c = hidden_index * S + slot``) with skip connections from phase slot 2.

:class:`UNet3D` is breastai's own residual 3-D U-Net (four resolution levels) for the
whole-breast mask on the normalised pre-contrast phase.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "SeedTumorConfig",
    "SeedTumorNet",
    "UNet3D",
    "UNet3DConfig",
    "build_network",
]

_LEAK = 0.2
_LN_EPS = 1e-6


def _conv(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=3, stride=1, padding=1)


def _conv_bn_act(cin: int, cout: int) -> nn.Sequential:
    """conv3x3x3 -> BatchNorm -> LeakyReLU(0.2) (keys ``.0`` conv, ``.1`` BN)."""
    return nn.Sequential(_conv(cin, cout), nn.BatchNorm3d(cout), nn.LeakyReLU(_LEAK))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """(conv -> BN -> act) -> conv -> BN (keys ``.0.0``, ``.0.1``, ``.1``, ``.2``)."""
    return nn.Sequential(_conv_bn_act(cin, cout), _conv(cout, cout), nn.BatchNorm3d(cout))


def _up_conv(cin: int, cout: int) -> nn.Sequential:
    """ConvTranspose3d(k3, s2, p1, op1) -> BN -> LeakyReLU: doubles each spatial size."""
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm3d(cout),
        nn.LeakyReLU(_LEAK),
    )


@dataclass(frozen=True)
class SeedTumorConfig:
    """Sizes of :class:`SeedTumorNet` (defaults: the authors' checkpoint).

    Attributes
    ----------
    filters:
        Channels of the first encoder level; levels have 1, 2, 4, 8 times this, the bridge 16.
    hidden:
        Transformer width (patch embedding size).
    mlp:
        Width of the transformer MLP.
    heads:
        Attention heads (not recoverable from a state dict; 12 in the authors' configuration).
    spatial_layers, temporal_layers:
        Transformer blocks in the spatial and the temporal encoder.
    slots:
        Phase slots S (time embeddings); slot 0 = pre-contrast.
    patch_zyx:
        Patch size; each side must be divisible by 16. The bottleneck has
        ``prod(patch_zyx) / 16**3`` positions (72 for 32 x 96 x 96).
    """

    filters: int = 16
    hidden: int = 768
    mlp: int = 2048
    heads: int = 12
    spatial_layers: int = 12
    temporal_layers: int = 12
    slots: int = 6
    patch_zyx: tuple[int, int, int] = (32, 96, 96)

    @property
    def bottleneck_zyx(self) -> tuple[int, int, int]:
        """Bottleneck grid (patch divided by 16 on each axis)."""
        z, y, x = self.patch_zyx
        return (z // 16, y // 16, x // 16)

    @property
    def positions(self) -> int:
        """Number of spatial tokens (bottleneck voxels)."""
        return math.prod(self.bottleneck_zyx)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for checkpoints)."""
        d = asdict(self)
        d["patch_zyx"] = list(self.patch_zyx)
        return d


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} attention heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: Tensor) -> Tensor:
        n, t, _ = x.shape
        return x.reshape(n, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q = self._split(self.query(x))
        k = self._split(self.key(x))
        v = self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        n, _, t, _ = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(n, t, self.heads * self.head_dim)
        out: Tensor = self.out(ctx)
        return out


class _Mlp(nn.Module):
    def __init__(self, hidden: int, mlp: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc2(nn.functional.gelu(self.fc1(x)))
        return out


class _Block(nn.Module):
    """Pre-norm ViT block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, hidden: int, mlp: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=_LN_EPS)
        self.ffn_norm = nn.LayerNorm(hidden, eps=_LN_EPS)
        self.ffn = _Mlp(hidden, mlp)
        self.attn = _Attention(hidden, heads)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attention_norm(x))
        out: Tensor = x + self.ffn(self.ffn_norm(x))
        return out


class _ViTEncoder(nn.Module):
    def __init__(self, hidden: int, mlp: int, heads: int, layers: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Block(hidden, mlp, heads) for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=_LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.layer:
            x = block(x)
        out: Tensor = self.encoder_norm(x)
        return out


class _ResEncoder(nn.Module):
    """Residual U-Net encoder: four levels (double conv + residual conv, then max-pool) + bridge."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        chans = [filters, filters * 2, filters * 4, filters * 8]
        cin = in_channels
        for k, c in enumerate(chans, start=1):
            self.add_module(f"down_{k}", _double_conv(cin, c))
            self.add_module(f"res_{k}", _conv_bn_act(cin, c))
            cin = c
        self.bridge = _double_conv(cin, filters * 16)
        self.res_bridge = _conv_bn_act(cin, filters * 16)
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        skips: list[Tensor] = []
        for k in range(1, 5):
            down = getattr(self, f"down_{k}")
            res = getattr(self, f"res_{k}")
            y = down(x) + res(x)
            skips.append(y)
            x = self.pool(y)
        bridge: Tensor = self.bridge(x) + self.res_bridge(x)
        return skips, bridge


class _SeedDecoder(nn.Module):
    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        f = filters
        self.ins = _conv_bn_act(in_channels, 16 * f)
        # level k: upsample from 2**(6-k) * f, concatenate skip with 2**(5-k) * f channels.
        for k in range(2, 6):
            cin = f * 2 ** (6 - k)
            cout = f * 2 ** (5 - k)
            self.add_module(f"trans_{k}", _up_conv(cin, cin))
            self.add_module(f"up_{k}", _double_conv(cin + cout, cout))
            if k < 5:
                self.add_module(f"res_up{k}", _conv_bn_act(cin + cout, cout))
        self.out = nn.Sequential(_conv(f, 1), nn.BatchNorm3d(1), nn.Sigmoid())

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        x = self.ins(x)
        for k in range(2, 6):
            x = getattr(self, f"trans_{k}")(x)
            x = torch.cat([x, skips[5 - k]], dim=1)
            y = getattr(self, f"up_{k}")(x)
            if k < 5:
                y = y + getattr(self, f"res_up{k}")(x)
            x = y
        out: Tensor = self.out(x)
        return out


class SeedTumorNet(nn.Module):
    """The authors' spatial-temporal tumor network (state-dict compatible with their checkpoint).

    Parameters
    ----------
    config:
        Network sizes; the defaults are those of the authors' checkpoint.

    Notes
    -----
    ``forward(phases, time_mask)`` takes ``phases`` float32 ``(B, S, 1, D, H, W)`` with
    ``(D, H, W) == config.patch_zyx`` and ``time_mask`` float32 ``(B, S)`` (1 = phase present) and
    returns the tumor probability ``(B, 1, D, H, W)`` in [0, 1].

    ``forward`` is exactly ``head(bridges, skips_of_slot_2, time_mask)`` after
    ``encode([P_i, P_i - P_0])`` of every slot; :meth:`encode` is fully convolutional, so
    inference can compute it once per phase over a whole volume and cut each window's features
    out of the feature maps (:func:`breastai.inference.sliding_window_features`).
    """

    def __init__(self, config: SeedTumorConfig | None = None) -> None:
        super().__init__()
        cfg = config or SeedTumorConfig()
        if any(s % 16 for s in cfg.patch_zyx):
            raise ValueError(f"patch_zyx {cfg.patch_zyx} must be divisible by 16 on every axis")
        self.config = cfg
        self.encoder_post = _ResEncoder(2, cfg.filters)
        self.patch_embeddings = nn.Conv3d(16 * cfg.filters, cfg.hidden, kernel_size=1)
        self.position_embeddings = nn.Parameter(torch.zeros(1, cfg.positions, cfg.hidden))
        self.time_embeddings = nn.Parameter(torch.zeros(1, cfg.slots, cfg.hidden))
        self.spatial_transformer = _ViTEncoder(cfg.hidden, cfg.mlp, cfg.heads, cfg.spatial_layers)
        self.temporal_transformer = _ViTEncoder(cfg.hidden, cfg.mlp, cfg.heads, cfg.temporal_layers)
        self.decoder = _SeedDecoder(cfg.slots * cfg.hidden, cfg.filters)

    def encode(self, pair: Tensor) -> tuple[list[Tensor], Tensor]:
        """The shared residual encoder on phase pairs (fully convolutional).

        Parameters
        ----------
        pair:
            ``(N, 2, D, H, W)``: ``[P_i, P_i - P_0]`` of one phase per batch item; each spatial
            side divisible by 16 (any size, not only the patch).

        Returns
        -------
        (list of Tensor, Tensor)
            The four level outputs (skips) ``(N, f * 2**k, D / 2**k, H / 2**k, W / 2**k)`` for
            k = 0..3 and the bridge ``(N, 16 f, D / 16, H / 16, W / 16)``.
        """
        skips, bridge = self.encoder_post(pair)
        return skips, bridge

    def head(self, bridges: Tensor, skips: list[Tensor], time_mask: Tensor) -> Tensor:
        """Everything after the encoder: patch embedding, transformers and decoder.

        Parameters
        ----------
        bridges:
            ``(B, S, 16 f, bz, by, bx)``: the encoder bridge of every phase slot of a window
            (``config.bottleneck_zyx``); masked slots may hold anything finite (they are
            multiplied by 0).
        skips:
            The four encoder level outputs of phase slot 2 of the window, ``(B, f * 2**k, ...)``.
        time_mask:
            ``(B, S)``, 1 = phase present.

        Returns
        -------
        Tensor
            Tumor probability ``(B, 1, D, H, W)``.
        """
        cfg = self.config
        s, hid, pos = cfg.slots, cfg.hidden, cfg.positions
        bz, by, bx = cfg.bottleneck_zyx
        flat = bridges.reshape(-1, *bridges.shape[2:])  # (B * S, 16 f, bz, by, bx)
        emb = self.patch_embeddings(flat).reshape(-1, s, hid, pos)  # (B, S, hid, pos)
        emb = emb * time_mask.reshape(-1, s, 1, 1)
        # spatial path: tokens = bottleneck voxels, batch = (B, phase)
        xs = emb.reshape(-1, hid, pos).transpose(1, 2) + self.position_embeddings
        xs = self.spatial_transformer(xs).reshape(-1, s, pos, hid)
        # temporal path: tokens = phases, batch = (B, voxel)
        xt = emb.permute(0, 3, 1, 2).reshape(-1, s, hid) + self.time_embeddings
        xt = self.temporal_transformer(xt).reshape(-1, pos, s, hid).permute(0, 2, 1, 3)
        mixed = (xs + xt).permute(0, 3, 1, 2)  # (B, hid, S, pos): channel = hid_index * S + slot
        mixed = mixed.reshape(-1, hid * s, bz, by, bx)
        out: Tensor = self.decoder(mixed, skips)
        return out

    def forward(self, phases: Tensor, time_mask: Tensor) -> Tensor:
        cfg = self.config
        s = cfg.slots
        d, h, w = cfg.patch_zyx
        pre = phases[:, :1]
        x = torch.cat([phases, phases - pre], dim=2)  # (B, S, 2, D, H, W): [P_i, P_i - P_0]
        skips_all, bridge = self.encode(x.reshape(-1, 2, d, h, w))
        # skip connections from phase slot 2 (second post-contrast phase)
        skips = [t.reshape(-1, s, *t.shape[1:])[:, 2] for t in skips_all]
        return self.head(bridge.reshape(-1, s, *bridge.shape[1:]), skips, time_mask)


@dataclass(frozen=True)
class UNet3DConfig:
    """Sizes of :class:`UNet3D`.

    Attributes
    ----------
    base:
        Channels of the first level; level k (0-based) has ``base * 2**k``.
    levels:
        Resolution levels (``levels - 1`` poolings); patch sides must be divisible by
        ``2**(levels - 1)``.
    in_channels:
        Input channels (1: the normalised pre-contrast phase).
    patch_zyx:
        Training patch size (recorded for the model card; the network is fully convolutional).
    """

    base: int = 8
    levels: int = 4
    in_channels: int = 1
    patch_zyx: tuple[int, int, int] = field(default=(48, 96, 96))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for checkpoints)."""
        d = asdict(self)
        d["patch_zyx"] = list(self.patch_zyx)
        return d


class UNet3D(nn.Module):
    """Residual 3-D U-Net for the whole-breast mask.

    Parameters
    ----------
    config:
        Network sizes.

    Notes
    -----
    ``forward(image)`` takes the normalised pre-contrast phase ``(B, 1, D, H, W)`` (each side
    divisible by ``2**(levels - 1)``) and returns the breast probability ``(B, 1, D, H, W)``.
    """

    def __init__(self, config: UNet3DConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNet3DConfig()
        if cfg.levels < 2:
            raise ValueError(f"UNet3D needs at least 2 levels, got {cfg.levels}")
        self.config = cfg
        chans = [cfg.base * 2**k for k in range(cfg.levels)]
        self.enc = nn.ModuleList()
        self.enc_res = nn.ModuleList()
        cin = cfg.in_channels
        for c in chans:
            self.enc.append(_double_conv(cin, c))
            self.enc_res.append(_conv_bn_act(cin, c))
            cin = c
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        self.dec_res = nn.ModuleList()
        for k in range(cfg.levels - 1, 0, -1):
            self.up.append(
                nn.Sequential(
                    nn.ConvTranspose3d(chans[k], chans[k - 1], kernel_size=2, stride=2),
                    nn.BatchNorm3d(chans[k - 1]),
                    nn.LeakyReLU(_LEAK),
                )
            )
            self.dec.append(_double_conv(2 * chans[k - 1], chans[k - 1]))
            self.dec_res.append(_conv_bn_act(2 * chans[k - 1], chans[k - 1]))
        self.head = nn.Conv3d(chans[0], 1, kernel_size=1)

    def logits(self, image: Tensor) -> Tensor:
        """Pre-sigmoid output ``(B, 1, D, H, W)``."""
        skips: list[Tensor] = []
        x = image
        for i, (enc, res) in enumerate(zip(self.enc, self.enc_res, strict=True)):
            x = nn.functional.leaky_relu(enc(x) + res(x), _LEAK)
            if i < len(self.enc) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec, res in zip(self.up, self.dec, self.dec_res, strict=True):
            x = torch.cat([up(x), skips.pop()], dim=1)
            x = nn.functional.leaky_relu(dec(x) + res(x), _LEAK)
        out: Tensor = self.head(x)
        return out

    def forward(self, image: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(image))


def build_network(task: str, config: dict[str, Any]) -> nn.Module:
    """Build a network from its task ("breast" | "tumor") and a config dict (as in checkpoints).

    Parameters
    ----------
    task:
        "breast" (:class:`UNet3D`) or "tumor" (:class:`SeedTumorNet`).
    config:
        Keyword arguments of :class:`UNet3DConfig` or :class:`SeedTumorConfig`.

    Returns
    -------
    torch.nn.Module
        The network, in training mode, randomly initialised.

    Raises
    ------
    ValueError
        For an unknown task.
    """
    cfg = dict(config)
    if "patch_zyx" in cfg:
        cfg["patch_zyx"] = tuple(int(v) for v in cfg["patch_zyx"])
    if task == "tumor":
        return SeedTumorNet(SeedTumorConfig(**cfg))
    if task == "breast":
        return UNet3D(UNet3DConfig(**cfg))
    raise ValueError(f"unknown task {task!r}; expected 'breast' or 'tumor'")
