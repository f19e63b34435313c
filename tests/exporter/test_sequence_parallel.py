"""Ulysses sequence parallelism in the exported DiT (dit.py forward_parallel): 2 and 4 Gloo ranks,
each a process running the scripted module on its share of the tokens, must each get the velocity
that one process gets from forward(), in float32 to 1e-5, for token counts that do and do not
divide by the ranks and for dense, radial and mixed layers. CPU only."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "worker" / "exporter"))

from radial_export.dit import DiTConfig, WanTransformer3DModel, shard_sizes  # noqa: E402
from radial_export.ops import load_radial_ops  # noqa: E402

load_radial_ops()
torch._C._jit_set_texpr_fuser_enabled(False)

# Four heads, so that 2 and 4 ranks both divide them (the tiny bundle has two).
CONFIG = DiTConfig(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64,
                   in_channels=16, out_channels=16, text_dim=64, freq_dim=256, ffn_dim=256,
                   num_layers=3)
RANK_SCRIPT = Path(__file__).resolve().parent / "sequence_parallel_rank.py"


def case(latent, dense, dense_layers, decay, block, seed, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return {"x": torch.randn((batch, 16) + latent, generator=gen),
            "t": torch.tensor([900.0, 250.0])[:batch],
            "context": torch.randn(batch, 9, CONFIG.text_dim, generator=gen),
            "dense": dense, "dense_layers": dense_layers, "decay": decay, "block": block}


CASES = [
    case((5, 16, 16), dense=False, dense_layers=1, decay=1.0, block=64, seed=1),  # 320 tokens
    case((3, 6, 10), dense=False, dense_layers=0, decay=0.5, block=64, seed=2),   # 45: ragged
    case((2, 10, 14), dense=True, dense_layers=0, decay=1.0, block=64, seed=3),   # 70: ragged at 4
    case((4, 8, 8), dense=False, dense_layers=3, decay=1.0, block=64, seed=4, batch=1),
]


@pytest.fixture(scope="module")
def module_and_reference(tmp_path_factory):
    torch.manual_seed(0)
    model = WanTransformer3DModel(CONFIG).eval()
    with torch.no_grad():  # a non-trivial output head (diffusers initialises it to zero)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    folder = tmp_path_factory.mktemp("sp")
    scripted = torch.jit.script(model)
    module_file = folder / "dit.pt"
    scripted.save(str(module_file))
    cases_file = folder / "cases.pt"
    torch.save(CASES, cases_file)
    with torch.no_grad():
        reference = [scripted(c["x"], c["t"], c["context"], c["dense"], c["dense_layers"],
                              c["decay"], True, c["block"]) for c in CASES]
    return folder, module_file, cases_file, reference


def test_shard_sizes():
    assert shard_sizes(45, 4) == [12, 11, 11, 11]
    assert shard_sizes(320, 2) == [160, 160]
    assert sum(shard_sizes(70, 4)) == 70


def run_ranks(world, folder, module_file, cases_file):
    store = folder / f"store-{world}"
    store.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ranks = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(rank), str(world), str(store),
                               str(module_file), str(cases_file), str(folder / f"out-{world}-{rank}.pt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(world)]
    for rank, process in enumerate(ranks):
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"rank {rank} of {world} failed:\n{output}"
    return [torch.load(folder / f"out-{world}-{rank}.pt") for rank in range(world)]


@pytest.mark.parametrize("world", [2, 4])
def test_every_rank_gets_the_single_process_velocity(module_and_reference, world):
    folder, module_file, cases_file, reference = module_and_reference
    per_rank = run_ranks(world, folder, module_file, cases_file)
    for rank, results in enumerate(per_rank):
        for index, (got, expected) in enumerate(zip(results, reference)):
            assert got.shape == expected.shape, (rank, index)
            scale = expected.abs().max().item()
            error = (got - expected).abs().max().item()
            assert error <= 1e-5 * max(scale, 1.0), f"rank {rank}/{world}, case {index}: {error}"


def test_heads_must_divide_by_the_ranks(module_and_reference):
    _, module_file, _, _ = module_and_reference
    module = torch.jit.load(str(module_file))
    c = CASES[0]
    with pytest.raises(torch.jit.Error, match="ranks dividing the 4 attention heads"):
        module.forward_parallel(c["x"], c["t"], c["context"], True, 0, 1.0, True, 64, 0, 3, "")
