// The worker's side of radial.v1.WorkerService: dials the scheduler, announces the loaded model,
// runs assigned jobs through the Pipeline and the Fmp4Encoder, and streams progress, MP4 chunks and
// the outcome back. Reconnects with backoff when the stream breaks (the scheduler requeues a job
// whose worker disappears, so a job cut off by a broken stream is abandoned here).
//
// Threads: the caller's thread runs Run() and reads the stream; one job thread runs the current job;
// one heartbeat thread. Writes to the stream are serialised by a mutex. Capacity is one job.
#ifndef RADIAL_WORKER_WORKER_CLIENT_H_
#define RADIAL_WORKER_WORKER_CLIENT_H_

#include <atomic>
#include <mutex>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "pipeline.h"

namespace radial::v1 {
class Assign;
class WorkerMessage;
}

namespace radial::worker {

struct WorkerOptions {
  std::string scheduler = "localhost:50051";  // host:port of radial-scheduler
  std::string worker_id;                      // unique; empty: hostname-pid
  int heartbeat_ms = 5000;
  int reconnect_max_ms = 5000;   // backoff doubles from 100 ms up to this
  int64_t max_chunk_bytes = 1 << 20;
  std::string x264_preset = "veryfast";
  int x264_threads = 1;           // 1: the same bytes for the same request on any machine
  bool exit_when_disconnected = false;  // tests: Run() returns when the stream ends
};

class WorkerClient {
 public:
  WorkerClient(WorkerOptions options, Pipeline& pipeline);
  ~WorkerClient();

  // Serves until Stop() (or, with exit_when_disconnected, until the first stream ends). Returns the
  // last stream error, OK after Stop().
  absl::Status Run();
  // Thread-safe; Run() returns soon after (a running job is cancelled between denoising steps).
  void Stop();

 private:
  struct Session;
  absl::Status Serve();
  // Runs one job, streaming progress and chunks; returns its last message (done or failed), which
  // the caller sends only after marking the worker idle, so the scheduler's next Assign finds it so.
  v1::WorkerMessage RunJob(Session& session, const v1::Assign& assign);
  WorkerOptions options_;
  Pipeline& pipeline_;
  std::atomic<bool> stopping_{false};
  std::mutex session_mutex_;
  std::shared_ptr<Session> session_;  // the live stream, for Stop()
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_CLIENT_H_
