// One stream to the scheduler (radial.v1.WorkerService/Connect) and the job running on it, shared by
// the threads of WorkerClient (worker_client.h): the reader (Serve), the heartbeat, the job thread and
// the job's encoder thread (through StreamJobSink), and Stop()/Drain() callers. Writes are
// serialised by one mutex, so messages from different threads never interleave on the stream.
#ifndef RADIAL_WORKER_WORKER_SESSION_H_
#define RADIAL_WORKER_WORKER_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "job_runner.h"
#include "radial/v1/worker_service.grpc.pb.h"

namespace radial::worker {

// Opens a channel to `address` with `credentials` and the worker's channel arguments (keepalive,
// message size, the TLS server name override when `tls_server_name` is set).
std::shared_ptr<grpc::Channel> SchedulerChannel(const std::string& address,
                                                const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                                const std::string& tls_server_name);

// Created by WorkerClient::Serve(), which ends it.
struct WorkerSession {
  grpc::ClientContext context;
  // Set by Serve() before `greeted`; only Serve() touches it before then.
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::SchedulerMessage>> stream;
  std::mutex write_mutex;  // serialises writes, and the half-close with them
  // Nothing more is written: the worker half-closed the stream (Drain) or it ended. Set under both
  // `mutex` and `write_mutex`.
  std::atomic<bool> closed{false};

  std::mutex mutex;  // guards the fields below; `wake` signals changes of them and of `closed`
  std::condition_variable wake;
  bool greeted = false;   // the Hello went out: Drain() may write on the stream
  bool draining = false;  // Draining sent: new assignments are handed back
  std::string job_id;     // running job, empty when idle (and once its outcome is sent)
  bool job_cancelled_by_scheduler = false;
  bool job_handed_back = false;     // its outcome is not sent: the scheduler has the job back
  std::atomic<bool> cancel{false};  // polled by the job runner (between denoising steps and frames)

  // Whether the message went out; false once the stream is closed or broken. Thread-safe.
  bool Write(const v1::WorkerMessage& message);
  // Half-closes the stream, after `last` when given (nothing else can come between them: a hand
  // back is the last word about its job): the scheduler sees the worker leave cleanly and ends the
  // call. Returns whether `last` was written. The caller holds `mutex`.
  bool CloseWritesLocked(const v1::WorkerMessage* last = nullptr);
};

// The job runner's sink for one job on a session: its progress and chunks as WorkerMessages.
class StreamJobSink final : public JobSink {
 public:
  StreamJobSink(WorkerSession& session, std::string job_id) : session_(session), job_id_(std::move(job_id)) {}
  // A progress message that cannot be written is dropped: the stream has ended, and the job with it.
  void Progress(JobStage stage, int64_t step, int64_t total) override;
  // UNAVAILABLE once the stream is closed, which stops the job.
  absl::Status WriteChunk(const Chunk& chunk) override;

 private:
  WorkerSession& session_;
  const std::string job_id_;
};

}  // namespace radial::worker

#endif  // RADIAL_WORKER_WORKER_SESSION_H_
