// radial.v1.WorkerService: one bidirectional stream per connected worker, bridged to the Scheduler.
// The stream is the worker's WorkerLink: the scheduler's Assign/Cancel messages are queued here and
// written one at a time; everything the worker sends goes to the scheduler. A broken stream (gRPC
// keepalive detects dead peers) tells the scheduler the worker is gone, which requeues its jobs; the
// scheduler closes the stream of a worker that stopped heartbeating. Raw bytes (raw_message.h), so
// a message that does not decode ends the stream with INVALID_ARGUMENT naming it.
#ifndef RADIAL_SERVER_RPC_WORKER_SERVICE_H_
#define RADIAL_SERVER_RPC_WORKER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "radial/v1/worker_service.grpc.pb.h"
#include "rpc/auth.h"
#include "scheduler/scheduler.h"

namespace radial::server {

class WorkerService final : public v1::WorkerService::WithRawCallbackMethod_Connect<v1::WorkerService::Service> {
 public:
  // A stream without the worker credential is refused (UNAUTHENTICATED) before its hello is read.
  WorkerService(Scheduler& scheduler, const Authenticator& authenticator)
      : scheduler_(scheduler), authenticator_(authenticator) {}

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Connect(grpc::CallbackServerContext* context) override;

 private:
  Scheduler& scheduler_;
  const Authenticator& authenticator_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_WORKER_SERVICE_H_
