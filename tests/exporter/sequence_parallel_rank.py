"""One rank of test_sequence_parallel.py: joins a Gloo process group (torch.distributed, a file
store), runs the scripted DiT's forward_parallel on every case of the case file and saves what it
got. Run as a script: sequence_parallel_rank.py RANK WORLD STORE_FILE MODULE CASES OUT."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "worker" / "exporter"))
from radial_export.ops import load_radial_ops  # noqa: E402


def main() -> None:
    rank, world = int(sys.argv[1]), int(sys.argv[2])
    store_file, module_file, cases_file, out_file = sys.argv[3:7]
    torch.set_num_threads(1)
    torch._C._jit_set_texpr_fuser_enabled(False)
    load_radial_ops()
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank,
                            world_size=world)
    group = dist.group.WORLD.group_name
    module = torch.jit.load(module_file)
    results = []
    with torch.no_grad():
        for case in torch.load(cases_file):
            results.append(module.forward_parallel(
                case["x"], case["t"], case["context"], case["dense"], case["dense_layers"],
                case["decay"], True, case["block"], rank, world, group))
    torch.save(results, out_file)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
