// The worker's side of radial.v1.WorkerService: dials the scheduler, announces the loaded model,
// checks each assignment against the model's manifest (assignment_check.h), runs it through the job
// runner (job_runner.h: the Pipeline and the Fmp4Encoder on its own thread) and streams progress,
// MP4 chunks and the outcome back. Reconnects with backoff when the stream breaks (the scheduler
// requeues a job whose worker disappears, so a job cut off by a broken stream is abandoned here).
//
// The parts: this class is the session's lifecycle (connect, reconnect with backoff, heartbeat,
// reading the stream, Accept, the job thread, drain, the observer's state); worker_session.h is the
// stream and its serialised writes; worker_security.h the TLS / token settings and what a refusal
// means; job_messages.h the translation between radial.v1 and the runner's plain C++ types.
//
// Security (WorkerSecurity): TLS to the scheduler, a client certificate for mutual TLS and/or a
// worker token. A stream the scheduler refuses (UNAUTHENTICATED, a failed TLS handshake) is logged
// as refused for credentials and retried with the usual backoff.
//
// Shutting down: Stop() drops the stream at once (the scheduler requeues the running job as lost);
// Drain() first lets the running job finish, or hands it back (JobHandBack) when its grace runs out,
// and closes the stream cleanly.
//
// Threads: the caller's thread runs Run() and reads the stream; one job thread runs the current job
// (the pipeline), beside it that job's encoder thread (inside RunJob); one heartbeat thread; Drain()
// works on its caller's thread. Writes to the stream are serialised by the session. Capacity is one
// job.
#ifndef RADIAL_WORKER_WORKER_CLIENT_H_
#define RADIAL_WORKER_WORKER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "pipeline.h"
#include "worker_observer.h"
#include "worker_security.h"

namespace radial::v1 {
class Assign;
class WorkerMessage;
}  // namespace radial::v1

namespace radial::worker {

struct WorkerSession;

struct WorkerOptions {
  std::string scheduler = "localhost:50051";  // host:port of radial-scheduler
  std::string worker_id;                      // unique; empty: hostname-pid
  WorkerSecurity security;                    // default: plaintext, no token (a loopback scheduler)
  int heartbeat_ms = 5000;
  int reconnect_max_ms = 5000;        // backoff doubles from 100 ms up to this
  int64_t max_chunk_bytes = 1 << 20;  // per chunk message, in [1024, 4 MiB)
  std::string x264_preset = "veryfast";
  // Passed to x264 for every job (EncoderOptions::threads): 1 gives the same bytes for the same
  // request on any machine; 0 is one per core. The encoder runs on its own thread either way.
  int x264_threads = 1;
  bool exit_when_disconnected = false;  // tests: Run() returns when the stream ends
  // Drain: how long the scheduler gets to end the stream after the worker half-closed it, before
  // the worker cancels the call itself.
  int drain_close_ms = 10000;
  // Told the worker's state and each job's outcome and timings (worker_observer.h); not owned, must
  // outlive the WorkerClient. nullptr: nothing is reported.
  WorkerObserver* observer = nullptr;
};

class WorkerClient {
 public:
  WorkerClient(WorkerOptions options, Pipeline& pipeline);
  ~WorkerClient();  // Stop()s; join the thread that runs Run() before

  // Serves until Stop() or Drain() (or, with exit_when_disconnected, until the first stream ends).
  // Returns the last stream error (with the scheduler's status code: UNAUTHENTICATED for refused
  // credentials, UNAVAILABLE for a lost connection or a failed TLS handshake), OK after Stop() or
  // Drain().
  absl::Status Run();
  // Thread-safe; Run() returns soon after. A running job is cancelled between denoising steps and
  // abandoned (the scheduler sees the stream break and requeues it).
  void Stop();
  // Thread-safe; a graceful Stop(). From the call on, the worker takes no new job (an Assign is
  // answered with JobHandBack) and Run() opens no new stream. It sends Draining{grace} and gives the
  // running job up to `grace` to finish; past it the job is cancelled between denoising steps and
  // handed back (JobHandBack, not JobFailed), unless the scheduler had cancelled it (then it ends
  // CANCELLED as usual). Then it half-closes the stream, waits for the scheduler to end it (at most
  // drain_close_ms, then cancels the call) and for the job thread to stop, and returns; Run()
  // returns OK. A call while a drain runs brings the drain's deadline forward to its own grace (0:
  // hand back now) and returns when that drain is done. With no stream open it only ends Run().
  void Drain(std::chrono::seconds grace);

 private:
  using Clock = std::chrono::steady_clock;
  using Session = WorkerSession;
  absl::Status Serve();
  // Handles one Assign on the reading thread: answers it at once (hand back while draining, busy,
  // outside the manifest) or starts the job thread.
  void Accept(const std::shared_ptr<Session>& session, const v1::Assign& assign, std::thread& job);
  // Runs one assigned job through RunJob (job_runner.h), streaming progress and chunks; returns
  // its last message (done or failed), which the job thread sends only after marking the worker
  // idle, so the scheduler's next Assign finds it so. Fills `record`'s timings for the observer
  // (the job thread sets its code).
  v1::WorkerMessage RunAssignment(Session& session, const v1::Assign& assign, JobRecord& record);
  // Drain()'s work on the stream of `session`: Draining, the wait, the hand back, the half-close.
  void DrainSession(Session& session, std::chrono::seconds grace);
  Clock::time_point DrainDeadline() const;
  // The state the observer sees follows from two facts, changed and reported under state_mutex_
  // (taken last, after any other lock) so that the observer hears concurrent changes in the
  // order they were made: draining wins, then a running job (busy), else idle.
  void SetJobRunning(bool running);
  void SetDraining();
  void ReportStateLocked();
  void ReportJob(const JobRecord& record);

  WorkerOptions options_;
  Pipeline& pipeline_;
  std::atomic<bool> stopping_{false};  // Run() opens no new stream
  // When the drain hands the running job back, as Clock ticks; max() while not draining. Atomic
  // because the draining thread reads it under the session's lock, which a second Drain() must
  // not need to take mutex_ first for.
  std::atomic<Clock::rep> drain_deadline_ticks_{Clock::duration::max().count()};
  std::atomic<bool> drain_cut_short_{false};  // a second Drain() brought the deadline forward
  std::mutex mutex_;                          // guards session_ and the drain flags below
  std::condition_variable changed_;           // session_ changed or a drain finished
  std::shared_ptr<Session> session_;          // the live stream, for Stop() and Drain()
  bool drain_started_ = false;
  bool drain_finished_ = false;
  std::mutex state_mutex_;  // guards the two below
  bool job_running_ = false;
  bool draining_ = false;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_CLIENT_H_
