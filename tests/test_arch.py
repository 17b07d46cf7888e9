"""Photo-size architectures built from a name without downloading: torchvision and timm."""

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import write_image_folder

from robustcnn.cli import main
from robustcnn.errors import InvalidInputError
from robustcnn.models import build_architecture

TORCHVISION = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"]


@pytest.mark.parametrize("name", TORCHVISION)
@pytest.mark.parametrize("channels", [3, 1])
def test_torchvision_architectures_build_untrained(name, channels):
    net = build_architecture(f"torchvision:{name}", num_classes=4, in_channels=channels).eval()
    with torch.no_grad():
        assert net(torch.rand(2, channels, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("channels", [3, 1])
def test_timm_architecture(channels):
    pytest.importorskip("timm")
    net = build_architecture("timm:resnet10t", num_classes=5, in_channels=channels).eval()
    with torch.no_grad():
        assert net(torch.rand(1, channels, 48, 48)).shape == (1, 5)
    with pytest.raises(InvalidInputError, match="timm has no architecture"):
        build_architecture("timm:no_such_net", 5, channels)


def test_state_dict_audit_at_photo_input(tmp_path, mnist):
    """A torchvision state_dict audited end to end on an ImageFolder, resized and cropped to its input."""
    net = build_architecture("torchvision:mobilenet_v3_large", num_classes=10, in_channels=3)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    te = torch.arange(10) * 100
    write_image_folder(
        tmp_path / "ds", mnist.test.x[te].expand(-1, 3, -1, -1), mnist.test.y[te], [str(i) for i in range(10)]
    )
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--model",
            str(tmp_path / "m.pt"),
            "--arch",
            "torchvision:mobilenet_v3_large",
            "--data",
            str(tmp_path / "ds"),
            "--input-size",
            "40x40",
            "--resize",
            "44",
            "--center-crop",
            "40",
            "--mean",
            "0.485,0.456,0.406",
            "--std",
            "0.229,0.224,0.225",
            "--checks",
            "clean",
            "--n",
            "5",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["model"]["input_size"] == [40, 40] and meta["data"]["eval_n"] == 5
