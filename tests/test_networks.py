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


def _torch_feature_callables(net):  # type: ignore[no-untyped-def]
    import numpy as np

    def encode(pair, with_skips):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            skips, bridge = net.encode(torch.from_numpy(pair))
        out = {"bridge": bridge.numpy()}
        if with_skips:
            out |= {f"skip{k + 1}": t.numpy() for k, t in enumerate(skips)}
        return out

    def head(feed):  # type: ignore[no-untyped-def]
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}
        with torch.no_grad():
            return net.head(t["bridges"], [t[f"skip{k}"] for k in range(1, 5)], t["time_mask"])

    return encode, head


def test_encode_then_head_is_forward_bit_for_bit() -> None:
    net = _tiny()
    torch.manual_seed(2)
    x = torch.rand(2, 6, 1, 16, 32, 32)
    mask = torch.tensor([[1.0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        ref = net(x, mask)
        pairs = torch.cat([x, x - x[:, :1]], dim=2).reshape(-1, 2, 16, 32, 32)
        skips, bridge = net.encode(pairs)
        slot2 = [t.reshape(2, 6, *t.shape[1:])[:, 2] for t in skips]
        got = net.head(bridge.reshape(2, 6, *bridge.shape[1:]), slot2, mask)
        # the encoder is convolutional: a larger input works (sides multiples of 16)
        big_skips, big_bridge = net.encode(torch.rand(1, 2, 32, 48, 64))
    assert torch.equal(got, ref)
    assert big_bridge.shape == (1, 32, 2, 3, 4) and big_skips[0].shape == (1, 2, 32, 48, 64)


def test_feature_reuse_blocks_and_halo_with_the_real_encoder() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared machine
    try:
        _check_feature_reuse_blocks_and_halo()
    finally:
        torch.set_num_threads(threads)


def _check_feature_reuse_blocks_and_halo() -> None:
    import numpy as np

    from breastai.inference import sliding_window, sliding_window_features

    net = _tiny(temporal_layers=1)
    encode, head = _torch_feature_callables(net)
    rng = np.random.default_rng(0)
    vol = rng.random((6, 1, 16, 32, 192), dtype=np.float32)
    tm = np.array([1, 1, 1, 1, 0, 0], np.float32)
    patch, stride = (16, 32, 32), (16, 16, 16)
    kw = {"blend": "mean", "batch_size": 4}
    whole = sliding_window_features(
        vol, tm, encode, head, patch, stride, max_block_voxels=None, **kw
    )
    blocks = sliding_window_features(
        vol, tm, encode, head, patch, stride, max_block_voxels=16 * 32 * 176, **kw
    )  # x split in two blocks of 96 + halo (default halo 64 >= receptive radius 62)
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-5)
    no_halo = sliding_window_features(
        vol, tm, encode, head, patch, stride, max_block_voxels=16 * 32 * 176, halo=0, **kw
    )
    assert float(np.abs(no_halo - whole).max()) > 1e-4  # context across blocks matters

    def predict(batch):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            t = torch.from_numpy(np.repeat(tm[None], len(batch), axis=0))
            return net(torch.from_numpy(batch), t).numpy()

    per_window = sliding_window(vol, predict, patch, stride, **kw)
    diff = np.abs(per_window - whole)
    # features differ near window borders (no zero padding inside the volume), not everywhere
    assert 1e-4 < float(diff.max()) < 0.5
    one = vol[:, :, :16, :32, :32]  # one window = the whole crop: identical
    np.testing.assert_allclose(
        sliding_window_features(one, tm, encode, head, patch, stride, **kw),
        sliding_window(one, predict, patch, stride, **kw),
        rtol=0,
        atol=1e-5,
    )


def test_encoder_receptive_radius_fits_the_default_halo() -> None:
    from breastai.inference import ENCODER_HALO, FEATURE_ALIGN

    net = _tiny()
    torch.manual_seed(3)
    x = torch.rand(1, 2, 16, 16, 320)
    y = x.repeat(16, 1, 1, 1, 1)
    for k in range(16):
        y[k, ..., 160 + k] += 5.0  # each voxel of bridge cell 10 in turn
    with torch.no_grad():
        _, b0 = net.encode(x.repeat(16, 1, 1, 1, 1))  # same batch: same conv algorithm
        _, b1 = net.encode(y)
    reach = 0
    for k in range(16):
        changed = ((b1[k] - b0[k]).abs().amax(dim=(0, 1, 2)) > 0).nonzero().flatten().tolist()
        pos = 160 + k
        # how far outside its own 16-voxel span a changed bridge cell sees
        reach = max(reach, pos - (16 * changed[0] + 15), 16 * changed[-1] - pos)
    assert reach == 62  # 4 levels + bridge of 3x3x3 conv pairs with max-pool 2
    assert reach <= ENCODER_HALO < reach + FEATURE_ALIGN and ENCODER_HALO % FEATURE_ALIGN == 0
