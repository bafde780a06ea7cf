"""Image-to-image baselines of the IIDM paper's Table 2: a convolutional VAE and pix2pix's parts.

* :class:`ConvVAE` (Kingma & Welling, ICLR 2014): an encoder maps the image ``x`` to a spatial
  Gaussian latent ``q(z | x)`` at 1/4 resolution, a decoder maps ``z`` to the map ``y``; trained
  with the masked reconstruction error + ``beta`` KL(q(z | x) || N(0, I)) (the negative ELBO,
  their Eq. 10); predicts with ``z`` = the posterior mean.
* :class:`PatchDiscriminator` (Isola et al., CVPR 2017, Sec. 3.2.2): a 70x70-receptive-field style
  PatchGAN classifying overlapping patches of ``(x, y)`` as real or generated; the generator is
  terradiff's UNet (a U-Net, as in pix2pix), trained with ``L_GAN + lambda L1``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ConvVAE", "PatchDiscriminator", "Pix2Pix"]


def _block(c_in: int, c_out: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(min(groups, c_out), c_out),
        nn.SiLU(),
    )


class ConvVAE(nn.Module):
    """Conditional-free convolutional VAE from an image to a map (see the module docstring).

    Args:
        in_channels: Image bands.
        out_channels: Map bands.
        channels: Width of the first level (doubled at each of the two down-samplings).
        latent_channels: Channels of the latent ``z`` (at 1/4 resolution).
        num_groups: GroupNorm groups.
    """

    downsample_factor = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        *,
        channels: int = 32,
        latent_channels: int = 8,
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        c = channels
        self.encoder = nn.Sequential(
            _block(in_channels, c, 1, num_groups),
            _block(c, 2 * c, 2, num_groups),
            _block(2 * c, 4 * c, 2, num_groups),
            _block(4 * c, 4 * c, 1, num_groups),
        )
        self.to_moments = nn.Conv2d(4 * c, 2 * latent_channels, 1)
        self.decoder = nn.Sequential(
            _block(latent_channels, 4 * c, 1, num_groups),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _block(4 * c, 2 * c, 1, num_groups),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _block(2 * c, c, 1, num_groups),
            nn.Conv2d(c, out_channels, 3, padding=1),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of ``q(z | x)``, each ``[B, latent, H/4, W/4]``."""
        mu, logvar = self.to_moments(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """The map ``[B, out, H, W]`` of a latent."""
        return self.decoder(z)

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(map, KL per latent element averaged)``; ``sample=False`` decodes the mean."""
        mu, logvar = self.encode(x)
        z = mu
        if sample:
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * noise
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()
        return self.decode(z), kl


class PatchDiscriminator(nn.Module):
    """PatchGAN: real/fake logits per overlapping patch of ``concat(x, y)`` (pix2pix Sec. 3.2.2).

    Args:
        in_channels: Image bands + map bands.
        channels: Width of the first layer (doubled per down-sampling layer, up to 8x).
        layers: Down-sampling layers (3: the 70x70 receptive field of pix2pix).
    """

    def __init__(self, in_channels: int, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        c = channels
        for i in range(1, layers + 1):
            c_out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            seq += [
                nn.Conv2d(c, c_out, 4, stride=stride, padding=1),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c = c_out
        seq.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)

    def forward(self, image: Tensor, target: Tensor) -> Tensor:
        """Logits ``[B, 1, h, w]``, one per patch."""
        return self.net(torch.cat([image, target], dim=1))


def simultaneous_gan_losses(
    discriminator: nn.Module, condition: Tensor, fake: Tensor, real: Tensor
) -> tuple[Tensor, Tensor]:
    """``(generator_loss, discriminator_loss)`` of a conditional GAN for one optimizer step.

    Non-saturating GAN losses (Goodfellow et al. 2014; pix2pix Eq. 1): the generator's term
    ``BCE(D(c, G), 1)`` sees the discriminator through detached parameters (its gradient reaches
    the generator only); the discriminator's term ``(BCE(D(c, y), 1) + BCE(D(c, G), 0)) / 2`` sees
    a detached ``fake`` (its gradient reaches the discriminator only). Their sum can be minimised
    by one optimizer over both networks: simultaneous rather than alternating updates, which keeps
    terradiff's single-optimizer Trainer (and DDP) unchanged.
    """
    from torch.func import functional_call

    bce = nn.functional.binary_cross_entropy_with_logits
    frozen = {k: v.detach() for k, v in discriminator.named_parameters()}
    fooled = functional_call(discriminator, frozen, (condition, fake))
    generator_loss = bce(fooled, torch.ones_like(fooled))
    real_logits = discriminator(condition, real)
    fake_logits = discriminator(condition, fake.detach())
    discriminator_loss = 0.5 * (
        bce(real_logits, torch.ones_like(real_logits))
        + bce(fake_logits, torch.zeros_like(fake_logits))
    )
    return generator_loss, discriminator_loss


class Pix2Pix(nn.Module):
    """pix2pix (Isola et al., CVPR 2017): a U-Net generator and a PatchGAN, trained as one module.

    ``forward(image)`` is the generator's map. ``forward(image, target, mask)`` is the training
    loss ``L_GAN(G) + lambda L1(G) + L_GAN(D)`` (their Eq. 4, non-saturating GAN loss) arranged so
    that one optimizer step updates both players with their own gradients: the generator's term
    sees the discriminator through detached parameters, the discriminator's term sees a detached
    generated map. (Simultaneous rather than alternating updates; one module keeps it compatible
    with terradiff's single-optimizer Trainer and with DDP.)

    Args:
        generator: a UNet from image bands to map bands (called at ``t = 0``).
        discriminator: a :class:`PatchDiscriminator` over image + map bands.
        l1_weight: ``lambda`` (pix2pix: 100).
    """

    def __init__(
        self, generator: nn.Module, discriminator: PatchDiscriminator, l1_weight: float = 100.0
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.l1_weight = float(l1_weight)
        self.downsample_factor = int(getattr(generator, "downsample_factor", 1))

    def generate(self, image: Tensor) -> Tensor:
        """The generated map of ``image``."""
        return self.generator(image, torch.zeros(image.shape[0], device=image.device))

    def forward(
        self, image: Tensor, target: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """The map (no ``target``), or the scalar training loss."""
        fake = self.generate(image)
        if target is None:
            return fake
        generator_adv, discriminator_loss = simultaneous_gan_losses(
            self.discriminator, image, fake, target
        )
        error = (fake.float() - target.float()).abs()
        if mask is not None:
            weight = mask.float().expand_as(error)
            l1 = (error * weight).sum() / weight.sum().clamp_min(1.0)
        else:
            l1 = error.mean()
        return generator_adv + self.l1_weight * l1 + discriminator_loss
