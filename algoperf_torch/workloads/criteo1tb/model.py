"""DLRM-small for Criteo 1TB, and its residual variant, as the AlgoPerf reference builds them.

Mirrors [algoperf/workloads/criteo1tb/criteo1tb_pytorch/models.py] (WORKLOADS.md §2.1, §2.5):
the embedding table is four parameters ``embedding_chunk_0..3`` (concatenated at forward time,
one table shared by the 26 categorical fields), a bottom MLP ``bot_mlp`` over the 13 dense
features, the dot interaction (upper triangle of the 27x27 Gram matrix with its diagonal, in
``torch.triu_indices`` order) and a top MLP ``top_mlp`` with a single dropout site after the
256-wide layer. Parameter names, registration order and the torch-RNG order of the init are
the reference's: chunks (``uniform_`` then scale, chunk 0 first), bottom Linears built, bottom
re-drawn (per Linear: weight Glorot-uniform, bias normal), top Linears built, top re-drawn (per
Linear: weight normal, bias normal). 539,267,457 parameters at the default vocabulary.

    python -m algoperf_torch.workloads --shapes criteo1tb
    python -m pytest tests/test_criteo_model.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NUM_CHUNKS = 4
NUM_SPARSE = 26


class Dropout(nn.Module):
    """``F.dropout`` with the rate given at call time (the reference's ``CustomDropout``)."""

    takes_dropout_rate = True

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout(x, p, training=self.training)


class DropoutSequential(nn.Sequential):
    """A Sequential that hands ``p`` to the members that take a dropout rate."""

    takes_dropout_rate = True

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        for module in self:
            x = module(x, p) if getattr(module, "takes_dropout_rate", False) else module(x)
        return x


class DenseBlock(nn.Module):
    """``module(x)``, plus ``x`` when ``resnet`` (names ``<i>.module.<j>`` as the reference)."""

    def __init__(self, module: nn.Module, resnet: bool = False) -> None:
        super().__init__()
        self.module = module
        self.resnet = resnet
        self.takes_dropout_rate = getattr(module, "takes_dropout_rate", False)

    def forward(self, x: torch.Tensor, p: float = 0.0) -> torch.Tensor:
        y = self.module(x, p) if self.takes_dropout_rate else self.module(x)
        return y + x if self.resnet else y


def _embedding_chunks(
    model: nn.Module, vocab_size: int, embed_dim: int, init_multiplier: float | None
) -> None:
    """Register ``embedding_chunk_<i>``: U[0, 1) times the scale, chunk 0 drawn first."""
    if vocab_size % NUM_CHUNKS:
        raise ValueError(f"vocab_size={vocab_size} must be a multiple of {NUM_CHUNKS}")
    if init_multiplier is None:
        # float32 1/sqrt(vocab), computed as the reference does (on an int32 tensor).
        scale = 1.0 / torch.sqrt(torch.tensor(vocab_size, dtype=torch.int32))
    else:
        scale = init_multiplier
    for i in range(NUM_CHUNKS):
        chunk = torch.empty(vocab_size // NUM_CHUNKS, embed_dim).uniform_(0, 1)
        model.register_parameter(f"embedding_chunk_{i}", nn.Parameter(scale * chunk))


def _init_bottom(mlp: nn.Module) -> None:
    """Per Linear in module order: Glorot-uniform weight, then N(0, 1/fan_out) bias."""
    for module in mlp.modules():
        if isinstance(module, nn.Linear):
            limit = math.sqrt(6.0 / (module.in_features + module.out_features))
            nn.init.uniform_(module.weight.data, -limit, limit)
            nn.init.normal_(module.bias.data, 0.0, math.sqrt(1.0 / module.out_features))


def _init_top(mlp: nn.Module) -> None:
    """Per Linear in module order: N(0, 2/(fan_in+fan_out)) weight, then N(0, 1/fan_out) bias."""
    for module in mlp.modules():
        if isinstance(module, nn.Linear):
            std = math.sqrt(2.0 / (module.in_features + module.out_features))
            nn.init.normal_(module.weight.data, 0.0, std)
            nn.init.normal_(module.bias.data, 0.0, math.sqrt(1.0 / module.out_features))


class _Embedded(nn.Module):
    """Shared input handling: split [B, 39] into dense [B, 13] and the embedded ids."""

    vocab_size: int
    num_dense_features: int
    embed_dim: int

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense [B, 13], embeddings [B, 26, D]) of the float inputs [B, 39]."""
        dense, sparse = torch.split(x, [self.num_dense_features, NUM_SPARSE], 1)
        # The ids arrive as float32 (reference behaviour): int32 cast, then % vocab.
        ids = sparse.to(torch.int32).reshape(-1) % self.vocab_size  # [B*26]
        chunks = [getattr(self, f"embedding_chunk_{i}") for i in range(NUM_CHUNKS)]
        table = torch.cat(chunks, dim=0)  # [vocab, D]
        return dense, table[ids].reshape(x.shape[0], NUM_SPARSE, self.embed_dim)


class DlrmSmall(_Embedded):
    """DLRM-small; ``use_layer_norm`` adds the ``criteo1tb_layernorm`` LayerNorms.

    Args:
        vocab_size: rows of the shared embedding table (4,194,304; 65,536 for the test workload).
        num_dense_features: dense inputs (13).
        mlp_bottom_dims, mlp_top_dims: layer widths; the last top width is the logit (1).
        embed_dim: embedding width (128).
        use_layer_norm: LayerNorm(eps=1e-6) after every hidden ReLU and on the embeddings.
        embedding_init_multiplier: the embedding scale; ``None`` is 1/sqrt(vocab_size).
    """

    def __init__(
        self,
        vocab_size: int,
        num_dense_features: int = 13,
        mlp_bottom_dims: tuple[int, ...] = (512, 256, 128),
        mlp_top_dims: tuple[int, ...] = (1024, 1024, 512, 256, 1),
        embed_dim: int = 128,
        use_layer_norm: bool = False,
        embedding_init_multiplier: float | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.num_dense_features = num_dense_features
        self.embed_dim = embed_dim
        _embedding_chunks(self, vocab_size, embed_dim, embedding_init_multiplier)

        layers: list[nn.Module] = []
        fan_in = num_dense_features
        for width in mlp_bottom_dims:
            layers += [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
            if use_layer_norm:
                layers.append(nn.LayerNorm(width, eps=1e-6))
            fan_in = width
        self.bot_mlp = nn.Sequential(*layers)
        _init_bottom(self.bot_mlp)

        self.dot_interact = DotInteract(NUM_SPARSE)
        n_rows = NUM_SPARSE + 1
        fan_in = mlp_bottom_dims[-1] + n_rows * (n_rows + 1) // 2  # 128 + 378 = 506
        layers = []
        for i, width in enumerate(mlp_top_dims):
            layers.append(nn.Linear(fan_in, width))
            if i < len(mlp_top_dims) - 1:
                layers.append(nn.ReLU(inplace=True))
                if use_layer_norm:
                    layers.append(nn.LayerNorm(width, eps=1e-6))
            if i == len(mlp_top_dims) - 2:
                layers.append(Dropout())
            fan_in = width
        self.top_mlp = DropoutSequential(*layers)
        # Built after top_mlp and before its re-init, as the reference (it draws nothing).
        self.embed_ln = nn.LayerNorm(embed_dim, eps=1e-6) if use_layer_norm else None
        _init_top(self.top_mlp)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        """Logits [B, 1] of inputs [B, 39] (13 dense features, then 26 float ids)."""
        dense, embedded = self.embed(x)
        bottom = self.bot_mlp(dense)  # [B, 128]
        if self.embed_ln is not None:
            embedded = self.embed_ln(embedded)
        return self.top_mlp(self.dot_interact(bottom, embedded), dropout_rate)


class DotInteract(nn.Module):
    """concat(dense, upper triangle with diagonal of the Gram matrix of [dense; sparse rows])."""

    def __init__(self, num_sparse_features: int) -> None:
        super().__init__()
        n = num_sparse_features + 1
        self.register_buffer("triu_indices", torch.triu_indices(n, n), persistent=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        rows = torch.cat((dense.unsqueeze(1), sparse), dim=1)  # [B, 27, D]
        gram = torch.bmm(rows, rows.transpose(1, 2))  # [B, 27, 27]
        flat = gram[:, self.triu_indices[0], self.triu_indices[1]]  # [B, 378]
        return torch.cat((dense, flat), dim=1)  # [B, D + 378]


class DLRMResNet(_Embedded):
    """The ``criteo1tb_resnet`` model: residual MLPs, no dot interaction (WORKLOADS.md §2.5).

    Bottom: layer 0 plain, later layers ``x + ReLU(Wx+b)``. Top input: concat(bottom output,
    the 26 flattened embeddings); layer 0 and the final logit layer plain, the others residual,
    the dropout inside the residual branch of the second-to-last layer. ``use_layer_norm`` is
    accepted and ignored, as in the reference.
    """

    def __init__(
        self,
        vocab_size: int,
        num_dense_features: int = 13,
        mlp_bottom_dims: tuple[int, ...] = (256, 256, 256),
        mlp_top_dims: tuple[int, ...] = (256, 256, 256, 256, 1),
        embed_dim: int = 128,
        use_layer_norm: bool = False,
        embedding_init_multiplier: float | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.num_dense_features = num_dense_features
        self.embed_dim = embed_dim
        _embedding_chunks(self, vocab_size, embed_dim, embedding_init_multiplier)

        blocks: list[nn.Module] = []
        fan_in = num_dense_features
        for i, width in enumerate(mlp_bottom_dims):
            inner = nn.Sequential(nn.Linear(fan_in, width), nn.ReLU(inplace=True))
            blocks.append(DenseBlock(inner, resnet=i > 0))
            fan_in = width
        self.bot_mlp = nn.Sequential(*blocks)
        _init_bottom(self.bot_mlp)

        fan_in = NUM_SPARSE * embed_dim + mlp_bottom_dims[-1]
        last = len(mlp_top_dims) - 1
        blocks = []
        for i, width in enumerate(mlp_top_dims):
            layers: list[nn.Module] = [nn.Linear(fan_in, width)]
            if i < last:
                layers.append(nn.ReLU(inplace=True))
            if i == last - 1:
                layers.append(Dropout())
            blocks.append(DenseBlock(DropoutSequential(*layers), resnet=0 < i < last))
            fan_in = width
        self.top_mlp = DropoutSequential(*blocks)
        _init_top(self.top_mlp)

    def forward(self, x: torch.Tensor, dropout_rate: float = 0.0) -> torch.Tensor:
        """Logits [B, 1] of inputs [B, 39]."""
        dense, embedded = self.embed(x)
        bottom = self.bot_mlp(dense)  # [B, 256]
        top_in = torch.cat([bottom, embedded.reshape(x.shape[0], -1)], dim=1)  # [B, 256 + 3328]
        return self.top_mlp(top_in, dropout_rate)
