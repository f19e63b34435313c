"""Build hook of radial-client: generates the protobuf and gRPC stubs of radial.v1.VideoService.

The metadata is in pyproject.toml; this file only adds two commands:
- build_py runs grpc_tools.protoc (a build requirement) on radial/v1/video_service.proto and puts
  video_service_pb2.py, its .pyi and video_service_pb2_grpc.py into radial_client/_proto/.
- sdist copies that .proto into the archive (proto/), so a wheel can be built from the sdist alone.

The .proto is read from proto/ next to this file (an unpacked sdist) or else from the repository's
root proto/ (a build from the checkout: `pip install ./client/python`).
"""

from __future__ import annotations

import importlib.resources
import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_FILE = "radial/v1/video_service.proto"
PROTO_ROOTS = (HERE / "proto", HERE.parent.parent / "proto")
STUB_PACKAGE = Path("radial_client") / "_proto"


def find_proto_root() -> Path:
    for root in PROTO_ROOTS:
        if (root / PROTO_FILE).is_file():
            return root
    searched = ", ".join(str(root / PROTO_FILE) for root in PROTO_ROOTS)
    raise SystemExit(f"radial-client: {PROTO_FILE} not found (looked at {searched})")


def generate_stubs(destination: Path) -> None:
    """Writes the stubs of PROTO_FILE into `destination` (a package directory, created if needed)."""
    from grpc_tools import protoc  # build requirement, see pyproject.toml

    root = find_proto_root()
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        code = protoc.main(["grpc_tools.protoc", f"-I{root}", f"-I{well_known}", f"--python_out={scratch}",
                            f"--pyi_out={scratch}", f"--grpc_python_out={scratch}", str(root / PROTO_FILE)])
        if code != 0:
            raise SystemExit(f"radial-client: protoc failed on {root / PROTO_FILE} (exit {code})")
        generated = Path(scratch) / Path(PROTO_FILE).parent
        destination.mkdir(parents=True, exist_ok=True)
        for name in ("video_service_pb2.py", "video_service_pb2.pyi"):
            shutil.copyfile(generated / name, destination / name)
        # The gRPC stub imports its messages by the .proto's path (radial.v1); inside this package
        # they sit next to it. The descriptor keeps its canonical name, radial/v1/video_service.proto.
        grpc_source = (generated / "video_service_pb2_grpc.py").read_text()
        grpc_source, count = re.subn(r"^from radial\.v1 import (video_service_pb2 as \w+)$", r"from . import \1",
                                     grpc_source, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit("radial-client: unexpected import lines in the generated video_service_pb2_grpc.py")
        (destination / "video_service_pb2_grpc.py").write_text(grpc_source)
    (destination / "__init__.py").write_text(f'"""Stubs generated from {PROTO_FILE} at build time."""\n')


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        # An editable install imports from src/, so the stubs go there (ignored by git).
        base = HERE / "src" if self.editable_mode else Path(self.build_lib)
        generate_stubs(base / STUB_PACKAGE)


class SdistWithProto(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        target = Path(base_dir) / "proto" / PROTO_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find_proto_root() / PROTO_FILE, target)


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProto})
