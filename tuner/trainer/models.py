"""MLP autoencoders: a plain AE and a VAE sharing one encoder/decoder shape.

The last hidden layer feeds `latent_dim` directly: the prior art's fixed 10-unit layer
before the latent capped every embedding at rank 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from tuner.trainer.config import TrialConfig


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


class AutoEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden_dims: Sequence[int], latent_dim: int, dropout: float):
        super().__init__()
        self.encoder = mlp([input_dim, *hidden_dims], dropout)
        self.head = nn.Linear(hidden_dims[-1], latent_dim)
        # Dropout only regularises the encoder: in the decoder it would blur the very
        # reconstructions the (1 - mu) term is meant to keep sharp.
        self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden_dims)], 0.0),
                                     nn.Linear(hidden_dims[0], input_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, decode: bool = True) -> Forward:
        z = self.embed(x)
        return Forward(embedding=z, x_hat=self.decode(z) if decode else None)


class VariationalAutoEncoder(AutoEncoder):
    def __init__(self, input_dim: int, hidden_dims: Sequence[int], latent_dim: int, dropout: float):
        super().__init__(input_dim, hidden_dims, latent_dim, dropout)
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


def build_model(cfg: TrialConfig, input_dim: int) -> AutoEncoder:
    cls = VariationalAutoEncoder if cfg.encoder == "vae" else AutoEncoder
    return cls(input_dim, cfg.hidden_dims, cfg.latent_dim, cfg.dropout)
