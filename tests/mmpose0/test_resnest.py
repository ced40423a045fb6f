"""MMPose 0.x specifics of the backbone: output convention, TopDown checkpoints, key lists.

The oracle comparisons with the built-in ResNeSt run on both hosts in
``tests/test_resnest_host.py``; the host-free options and golden counts in
``tests/test_resnest_core.py``.

Same weights must give the same outputs: the released MMPose checkpoints
were trained with the built-in, so any numeric drift would cost AP.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmpose.models.backbones import ResNeSt as BuiltinResNeSt

from resnest_plugin.hosts.mmpose0 import ResNeSt

from model_helpers import randomise

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def test_single_out_index_returns_tensor_and_several_return_tuple() -> None:
    """The 0.x convention (heads take a bare tensor), adapted from the core's tuple by the host."""
    x = torch.randn(1, 3, 32, 32)
    single = ResNeSt(depth=50, out_indices=(3,)).eval()(x)
    several = ResNeSt(depth=50, out_indices=(1, 3)).eval()(x)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 2048, 1, 1)
    assert isinstance(several, tuple) and [t.shape[1] for t in several] == [512, 2048]


def test_full_topdown_model_from_mmpose_config_loads_builtin_weights(repo_root: Path) -> None:
    """The released-checkpoint format (built-in TopDown state dict) loads strictly into ours."""
    import mmpose
    from mmcv import Config
    from mmpose.models import build_posenet

    config_path = (Path(mmpose.__file__).parent / ".mim" / "configs" / "body" / "2d_kpt_sview_rgb_img"
                   / "topdown_heatmap" / "coco" / "resnest50_coco_256x192.py")
    cfg = Config.fromfile(str(config_path))
    cfg.model.pretrained = None
    builtin = build_posenet(cfg.model)
    cfg.model.backbone.type = "resnest_plugin.ResNeSt"
    cfg.model.backbone.stem_channels = 64
    ours = build_posenet(cfg.model)
    assert type(ours.backbone) is ResNeSt and type(builtin.backbone) is BuiltinResNeSt
    randomise(builtin, seed=5)
    state = builtin.state_dict()
    assert len(state) == 494  # STACK.md: ResNeSt-50 TopDown checkpoints have 494 keys
    ours.load_state_dict(state, strict=True)
    image = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(2))
    builtin.eval()
    ours.eval()
    with torch.no_grad():
        expected = builtin.forward_dummy(image)
        actual = ours.forward_dummy(image)
    assert actual.shape == (2, 17, 64, 48)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# --- golden facts ---------------------------------------------------------

def _key_shape_lines(model: torch.nn.Module) -> str:
    return "".join(f"{k} {list(v.shape)}\n" for k, v in model.state_dict().items())


# Key counts of the released TopDown checkpoints (= the models MMPose 0.29 builds from
# its resnest{50,101,200,269}_coco_*.py configs, 64-channel stem at every depth).
@pytest.mark.parametrize("depth,expected_keys", [(50, 494), (101, 953), (200, 1844), (269, 2465)])
def test_released_checkpoint_key_list_matches_golden_file(depth: int, expected_keys: int,
                                                          request: pytest.FixtureRequest) -> None:
    """Keys/shapes of a TopDown model with our backbone = the released checkpoints' format."""
    from mmpose.models import TopDown

    model = TopDown(
        backbone=dict(type="resnest_plugin.ResNeSt", depth=depth, stem_channels=64),
        keypoint_head=dict(type="TopdownHeatmapSimpleHead", in_channels=2048, out_channels=17,
                           loss_keypoint=dict(type="JointsMSELoss", use_target_weight=True)),
        train_cfg=dict(), test_cfg=dict(flip_test=True))
    text = _key_shape_lines(model)
    golden = GOLDEN_DIR / f"resnest{depth}_topdown_state_dict.txt"
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert len(text.splitlines()) == expected_keys
    assert text == golden.read_text(), f"state-dict keys/shapes drifted from {golden}"
