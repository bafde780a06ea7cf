"""VAE and pix2pix baselines: shapes, the KL term, and each player's gradients."""

from __future__ import annotations

import torch
from torch import nn

from terradiff.nets.translation import (
    ConvVAE,
    PatchDiscriminator,
    Pix2Pix,
    simultaneous_gan_losses,
)
from terradiff.nets.unet import UNet


def test_vae_shapes_and_kl_of_the_prior_is_zero() -> None:
    vae = ConvVAE(10, 1, channels=8, latent_channels=4, num_groups=4)
    out, kl = vae(torch.randn(2, 10, 32, 32), torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 32, 32) and kl.ndim == 0 and kl >= 0
    for p in vae.to_moments.parameters():
        nn.init.zeros_(p)  # mu = 0, logvar = 0: q(z|x) is the prior
    _, kl = vae(torch.randn(2, 10, 32, 32))
    assert kl.abs() < 1e-7
    mean_a, _ = vae(torch.randn(1, 10, 32, 32), sample=False)
    assert mean_a.shape == (1, 1, 32, 32)


def test_pix2pix_updates_each_player_with_its_own_loss() -> None:
    torch.manual_seed(0)
    generator = UNet(
        3,
        1,
        base_channels=8,
        channel_mults=(1, 2),
        num_groups=4,
        attention_resolutions=(),
        image_size=32,
    )
    nn.init.normal_(generator.out[1].weight, std=0.1)
    model = Pix2Pix(generator, PatchDiscriminator(4, 8, layers=2), l1_weight=10.0)
    image, target = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    model(image, target).backward()
    d_grad = [p.grad.clone() for p in model.discriminator.parameters()]
    # the discriminator's gradient is that of its own loss alone
    model.zero_grad()
    fake = model.generate(image).detach()
    bce = nn.functional.binary_cross_entropy_with_logits
    real, fake_logits = model.discriminator(image, target), model.discriminator(image, fake)
    d_loss = 0.5 * (
        bce(real, torch.ones_like(real)) + bce(fake_logits, torch.zeros_like(fake_logits))
    )
    d_loss.backward()
    for a, p in zip(d_grad, model.discriminator.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)
    assert model(image).shape == (2, 1, 32, 32)


def test_simultaneous_gan_losses_send_each_gradient_to_its_player() -> None:
    critic = PatchDiscriminator(4, 8)
    condition, real = torch.randn(2, 2, 32, 32), torch.randn(2, 2, 32, 32)
    fake = torch.randn(2, 2, 32, 32, requires_grad=True)
    generator_loss, critic_loss = simultaneous_gan_losses(critic, condition, fake, real)
    generator_loss.backward()
    assert fake.grad is not None and all(p.grad is None for p in critic.parameters())
    fake.grad = None
    critic_loss.backward()
    assert fake.grad is None and all(p.grad is not None for p in critic.parameters())
