"""Networks: shapes, parameters and the documented data flow of the seed tumor network."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.train


def _tiny(**kw: object):  # type: ignore[no-untyped-def]
    from breastai.training.networks import SeedTumorConfig, SeedTumorNet

    cfg = {
        "filters": 2,
        "hidden": 8,
        "mlp": 16,
        "heads": 2,
        "spatial_layers": 1,
        "temporal_layers": 2,
        "slots": 6,
        "patch_zyx": (16, 32, 32),
    }
    cfg.update(kw)
    torch.manual_seed(0)
    net = SeedTumorNet(SeedTumorConfig(**cfg)).eval()  # type: ignore[arg-type]
    # non-trivial BatchNorm statistics so that every path carries signal
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        net.position_embeddings.normal_(0, 0.5)
        net.time_embeddings.normal_(0, 0.5)
    return net


def test_seed_config_positions_and_state_dict_shapes() -> None:
    from breastai.training.networks import SeedTumorConfig, SeedTumorNet

    cfg = SeedTumorConfig(hidden=96, mlp=192, spatial_layers=2, temporal_layers=2)
    assert cfg.positions == 72  # 2 x 6 x 6 bottleneck of a 32 x 96 x 96 patch
    sd = SeedTumorNet(cfg).state_dict()
    assert sd["position_embeddings"].shape == (1, 72, 96)
    assert sd["time_embeddings"].shape == (1, 6, 96)
    assert sd["encoder_post.down_1.0.0.weight"].shape == (16, 2, 3, 3, 3)  # [P_i, P_i - P_0]
    assert sd["encoder_post.res_bridge.0.weight"].shape == (256, 128, 3, 3, 3)
    assert sd["decoder.ins.0.weight"].shape == (256, 6 * 96, 3, 3, 3)
    assert sd["decoder.trans_2.0.weight"].shape == (256, 256, 3, 3, 3)  # ConvTranspose3d
    assert sd["decoder.up_5.0.0.weight"].shape == (16, 48, 3, 3, 3)
    assert "decoder.res_up5.0.weight" not in sd  # the last level has no residual branch
    assert sd["spatial_transformer.layer.1.attn.out.weight"].shape == (96, 96)
    assert sd["temporal_transformer.encoder_norm.weight"].shape == (96,)
    with pytest.raises(ValueError, match="divisible by 16"):
        SeedTumorNet(SeedTumorConfig(patch_zyx=(24, 96, 96)))


def test_seed_forward_shape_and_range() -> None:
    net = _tiny()
    x = torch.rand(2, 6, 1, 16, 32, 32)
    with torch.no_grad():
        p = net(x, torch.ones(2, 6))
    assert p.shape == (2, 1, 16, 32, 32)
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_masked_slot_content_is_ignored_but_slot2_feeds_skips() -> None:
    net = _tiny()
    torch.manual_seed(1)
    x = torch.rand(1, 6, 1, 16, 32, 32)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        ref = net(x, mask)
        y = x.clone()
        y[:, 4] = torch.rand(1, 16, 32, 32)  # masked slot 4: its features are multiplied by 0
        same = net(y, mask)
        z = x.clone()
        z[:, 2] = torch.rand(1, 16, 32, 32)  # masked slot 2 still provides the skip connections
        other = net(z, mask)
    torch.testing.assert_close(same, ref, rtol=0, atol=1e-6)
    assert float((other - ref).abs().max()) > 1e-3


def test_unet3d_shapes_and_gradients() -> None:
    from breastai.training.networks import UNet3D, UNet3DConfig, build_network

    net = UNet3D(UNet3DConfig(base=2, levels=4))
    x = torch.rand(2, 1, 16, 24, 32)
    p = net(x)
    assert p.shape == (2, 1, 16, 24, 32)
    p.mean().backward()
    assert all(q.grad is not None for q in net.parameters())
    assert isinstance(build_network("breast", {"base": 2, "levels": 3}), UNet3D)
    with pytest.raises(ValueError, match="unknown task"):
        build_network("lung", {})
