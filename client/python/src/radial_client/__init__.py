"""Python client of radial-scheduler (radial.v1.VideoService): text prompt in, H.264 MP4 out.

    from radial_client import RadialClient

    with RadialClient("localhost:50051") as client:
        job = client.generate("a red fox in the snow", "fox.mp4", frames=17, steps=8,
                              progress=lambda p: print(p.stage.name, p.step, p.total))

Jobs, models and stats are the API's protobuf messages (`radial_client.pb`, with type stubs);
events are the dataclasses of `radial_client.events`; every failure is a RadialError.
"""

from importlib import metadata as _metadata

from ._proto import video_service_pb2 as pb
from .client import EventCallback, ProgressCallback, RadialClient, RadialOptions, build_request
from .errors import RadialError
from .events import Accepted, Cancelled, Chunk, Completed, Failed, JobEvent, JobState, Progress, Restarted, Stage

try:
    __version__ = _metadata.version("radial-client")
except _metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0.0.0"

__all__ = [
    "Accepted", "Cancelled", "Chunk", "Completed", "EventCallback", "Failed", "JobEvent", "JobState", "Progress",
    "ProgressCallback", "RadialClient", "RadialError", "RadialOptions", "Restarted", "Stage", "build_request", "pb",
]
