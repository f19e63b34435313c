"""A second, independent client: Python with grpcio stubs generated from proto/ at test time, against
a real radial-standalone process (scheduler with an embedded worker) on the tiny bundle.

Environment (set by ctest): RADIAL_STANDALONE_BIN, RADIAL_TEST_BUNDLE.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stubs")
    for proto in ("radial/v1/video_service.proto", "radial/v1/worker_service.proto"):
        code = protoc.main(["protoc", f"-I{REPO / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}",
                            proto])
        assert code == 0, f"protoc failed on {proto}"
    sys.path.insert(0, str(out))
    from radial.v1 import video_service_pb2, video_service_pb2_grpc  # noqa: E402
    return video_service_pb2, video_service_pb2_grpc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ["RADIAL_STANDALONE_BIN"]
    bundle = os.environ["RADIAL_TEST_BUNDLE"]
    work = tmp_path_factory.mktemp("server")
    port_file = work / "port"
    log = open(work / "scheduler.log", "w")
    process = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--port-file", str(port_file),
                                "--embedded-worker", bundle], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not port_file.exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert port_file.exists(), f"radial-scheduler did not start: {(work / 'scheduler.log').read_text()}"
        yield f"127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def client(stubs, server):
    pb, pb_grpc = stubs
    channel = grpc.insecure_channel(server)
    stub = pb_grpc.VideoServiceStub(channel)
    deadline = time.time() + 30  # the embedded worker announces its model after loading it
    while time.time() < deadline:
        models = stub.ListModels(pb.ListModelsRequest(), timeout=5)
        if models.models and models.models[0].workers == 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the embedded worker never announced its model")
    yield pb, stub
    channel.close()


def test_generate_streams_a_playable_video(client, tmp_path):
    pb, stub = client
    request = pb.GenerateRequest(prompt="a lighthouse at night, waves", seed=3)
    data = b""
    kinds = []
    for event in stub.Generate(request, timeout=120):
        kind = event.WhichOneof("event")
        kinds.append(kind)
        if kind == "chunk":
            assert event.chunk.offset == len(data)
            data += event.chunk.data
    assert kinds[0] == "accepted" and kinds[-1] == "completed"
    assert "progress" in kinds
    assert data[4:8] == b"ftyp"
    video = tmp_path / "video.mp4"
    video.write_bytes(data)
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                                "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1",
                                str(video)], capture_output=True, text=True, check=True).stdout
        assert "codec_name=h264" in probe and "width=128" in probe and "nb_read_frames=17" in probe, probe


def test_submit_then_get_job_and_models(client):
    pb, stub = client
    job = stub.Submit(pb.GenerateRequest(prompt="a tiny red boat", steps=2), timeout=10)
    assert job.id and job.request.steps == 2 and job.request.width == 128
    deadline = time.time() + 60
    while time.time() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=10)
        if job.state == pb.JOB_STATE_SUCCEEDED:
            break
        time.sleep(0.1)
    assert job.state == pb.JOB_STATE_SUCCEEDED
    assert job.stats.frames == 17 and job.bytes_produced > 0
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert models.default_model == "wan2.1-tiny"


def test_bad_input_gets_invalid_argument_naming_the_field(client):
    pb, stub = client
    with pytest.raises(grpc.RpcError) as error:
        stub.Submit(pb.GenerateRequest(prompt="x", width=100), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("width: got 100, expected a multiple of 16")
    with pytest.raises(grpc.RpcError) as error:
        stub.GetJob(pb.GetJobRequest(job_id="nope"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(client, server):
    # What grpcurl does first: ask the server's reflection service which services it has.
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(server) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=10)
        names = {service.name for response in responses for service in response.list_services_response.service}
    assert {"radial.v1.VideoService", "radial.v1.WorkerService", "grpc.health.v1.Health"} <= names, names
