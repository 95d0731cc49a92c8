import pytest
import torch
from torch import nn

from lightning_models.checks import ConfigError
from lightning_models.nets import MLP, AutoEncoder, FashionCNN, Powers, QuadrantOneHot, make_activation


def test_mlp_without_hidden_layers_is_one_linear_layer():
    net = MLP(3, 1)
    assert [type(layer) for layer in net] == [nn.Linear]
    assert net(torch.zeros(5, 3)).shape == (5, 1)


def test_mlp_layers_follow_hidden_sizes_and_activation():
    net = MLP(4, 3, hidden_sizes=[6, 5], activation="sigmoid")
    linears = [layer for layer in net if isinstance(layer, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(4, 6), (6, 5), (5, 3)]
    assert sum(isinstance(layer, nn.Sigmoid) for layer in net) == 2
    assert not isinstance(net[-1], nn.Sigmoid)  # no activation on the output by default


def test_leaky_relu_slope_and_output_activation():
    net = MLP(1, 1, hidden_sizes=[16, 32], activation="leaky_relu", negative_slope=0.2, output_activation="leaky_relu")
    leaky = [layer for layer in net if isinstance(layer, nn.LeakyReLU)]
    assert len(leaky) == 3 and all(layer.negative_slope == 0.2 for layer in leaky)
    assert make_activation("leaky_relu", 0.3)(torch.tensor([-1.0])).item() == pytest.approx(-0.3)


@pytest.mark.parametrize("sizes", [dict(in_features=0, out_features=1), dict(in_features=3, out_features=1, hidden_sizes=[4, -2])])
def test_mlp_rejects_non_positive_sizes(sizes):
    with pytest.raises(ConfigError, match="positive integer"):
        MLP(**sizes)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ConfigError, match=r"activation='swish'.*relu"):
        MLP(3, 1, hidden_sizes=[4], activation="swish")


def test_autoencoder_code_and_reconstruction_shapes():
    net = AutoEncoder(4, 4, latent_size=2, hidden_sizes=[8], latent_activation="sigmoid")
    x = torch.randn(7, 4)
    code = net.encode(x)
    assert code.shape == (7, 2) and bool(((code > 0) & (code < 1)).all())
    assert net(x).shape == (7, 4)


def test_fashion_cnn_matches_the_source_architecture():
    net = FashionCNN()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    linears = [layer for layer in net.modules() if isinstance(layer, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(2304, 600), (600, 120), (120, 10)]
    assert any(isinstance(layer, nn.Dropout) for layer in net.modules())
    assert not any(isinstance(layer, nn.Dropout2d) for layer in net.modules())


def test_feature_maps_and_the_spec_that_rebuilds_them():
    x = torch.tensor([[2.0, -1.0], [-0.5, 3.0], [-1.0, -2.0], [0.5, -0.25]])
    assert Powers(3)(x).tolist() == [[2.0, -1.0, 4.0, 1.0, 8.0, -1.0], [-0.5, 3.0, 0.25, 9.0, -0.125, 27.0],
                                     [-1.0, -2.0, 1.0, 4.0, -1.0, -8.0], [0.5, -0.25, 0.25, 0.0625, 0.125, -0.015625]]
    assert QuadrantOneHot()(x).tolist() == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert Powers(3).spec() == {"class_path": "lightning_models.nets.Powers", "init_args": {"degree": 3}}
    assert QuadrantOneHot().spec() == {"class_path": "lightning_models.nets.QuadrantOneHot", "init_args": {}}
    with pytest.raises(ConfigError, match="degree=0"):
        Powers(0)
