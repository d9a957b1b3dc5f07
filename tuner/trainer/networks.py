"""Autoencoders: a plain AE and a VAE sharing one encoder/decoder shape, an MLP or (raw image
pixels) strided convolutions before the dense layers.

The last hidden layer feeds `latent_dim` directly: the prior work's fixed 10-unit layer
before the latent capped every embedding at rank 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tuner.core.config import TrialConfig
from tuner.errors import TunerError


@dataclass
class Forward:
    """One forward pass. `embedding` is what the metric loss and kNN see (the
    posterior mean for a VAE); `x_hat` decodes a sample of the posterior in training."""

    embedding: torch.Tensor
    x_hat: torch.Tensor | None
    mean: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


def mlp(widths: Sequence[int], dropout: float) -> nn.Sequential:
    """Linear -> LeakyReLU (-> Dropout) for each consecutive pair of widths."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def conv_encoder(
    image: tuple[int, int, int], channels: Sequence[int], hidden_dims: Sequence[int], dropout: float
) -> nn.Sequential:
    """Flat pixels -> (C, H, W) -> a stride-2 conv per channel width -> the dense hidden layers."""
    c, h, w = image
    layers: list[nn.Module] = [nn.Unflatten(1, image)]
    for n_in, n_out in zip([c, *channels[:-1]], channels):
        layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    scale = 2 ** len(channels)
    layers += [
        nn.Flatten(),
        mlp([channels[-1] * (h // scale) * (w // scale), *hidden_dims], dropout),
    ]
    return nn.Sequential(*layers)


def conv_decoder(
    image: tuple[int, int, int],
    channels: Sequence[int],
    hidden_dims: Sequence[int],
    latent_dim: int,
) -> nn.Sequential:
    """The encoder's mirror: dense layers, then a stride-2 transposed conv per width, to flat
    pixels."""
    c, h, w = image
    scale = 2 ** len(channels)
    small = (channels[-1], h // scale, w // scale)
    layers: list[nn.Module] = [
        mlp([latent_dim, *reversed(hidden_dims), small[0] * small[1] * small[2]], 0.0),
        nn.Unflatten(1, small),
    ]
    widths = [*reversed(channels), c]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1))
        if i < len(widths) - 2:  # the last layer gives pixels: no activation here (see decode)
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers, nn.Flatten())


class AutoEncoder(nn.Module):
    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        latent_dim: int,
        dropout: float,
        image: tuple[int, int, int] | None = None,
        channels: Sequence[int] = (),
        sigmoid: bool = False,
    ):
        super().__init__()
        self.sigmoid = sigmoid
        # Built in this order (encoder, head, decoder): it fixes how a seed initialises the weights.
        if image is not None:
            self.encoder = conv_encoder(image, channels, hidden_dims, dropout)
            self.head = nn.Linear(hidden_dims[-1], latent_dim)
            self.decoder = conv_decoder(image, channels, hidden_dims, latent_dim)
            return
        self.encoder = mlp([input_dim, *hidden_dims], dropout)
        self.head = nn.Linear(hidden_dims[-1], latent_dim)
        # Dropout only regularises the encoder: in the decoder it would blur the very
        # reconstructions the (1 - mu) term is meant to keep sharp.
        self.decoder = nn.Sequential(
            mlp([latent_dim, *reversed(hidden_dims)], 0.0), nn.Linear(hidden_dims[0], input_dim)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # sigmoid: raw pixels lie in [0, 1]; a linear output spends capacity on values outside.
        out = self.decoder(z)
        return torch.sigmoid(out) if self.sigmoid else out

    def forward(self, x: torch.Tensor, decode: bool = True) -> Forward:
        z = self.embed(x)
        return Forward(embedding=z, x_hat=self.decode(z) if decode else None)


class VariationalAutoEncoder(AutoEncoder):
    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        latent_dim: int,
        dropout: float,
        image: tuple[int, int, int] | None = None,
        channels: Sequence[int] = (),
        sigmoid: bool = False,
    ):
        super().__init__(input_dim, hidden_dims, latent_dim, dropout, image, channels, sigmoid)
        self.logvar_head = nn.Linear(hidden_dims[-1], latent_dim)

    def forward(self, x: torch.Tensor, decode: bool = True) -> Forward:
        h = self.encoder(x)
        mean, logvar = self.head(h), self.logvar_head(h)
        x_hat = None
        if decode:
            # At evaluation the reconstruction decodes the mean, as the embedding does.
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
            x_hat = self.decode(z)
        return Forward(embedding=mean, x_hat=x_hat, mean=mean, logvar=logvar)


def image_shape(cfg: TrialConfig, input_dim: int) -> tuple[int, int, int]:
    """(C, H, W) of flat raw pixels: square images with 1 or 3 channels (MNIST, digits, CIFAR-10, an
    image folder), whose side halves exactly once per conv layer."""
    scale = 2 ** len(cfg.conv_channels)
    for c in (1, 3):
        side = round((input_dim / c) ** 0.5)
        if side * side * c == input_dim and side % scale == 0:
            return c, side, side
    raise TunerError(
        f"architecture = conv: {input_dim} input features are not square 1- or 3-channel images "
        f"whose side is divisible by {scale} (2 ** {len(cfg.conv_channels)} conv layers): use "
        f"architecture: mlp, or fewer conv_channels.",
        key="architecture",
    )


def build_model(cfg: TrialConfig, input_dim: int) -> AutoEncoder:
    cls = VariationalAutoEncoder if cfg.encoder == "vae" else AutoEncoder
    image = image_shape(cfg, input_dim) if cfg.architecture == "conv" else None
    return cls(
        input_dim,
        cfg.hidden_dims,
        cfg.latent_dim,
        cfg.dropout,
        image,
        cfg.conv_channels,
        cfg.decoder_output == "sigmoid",
    )
