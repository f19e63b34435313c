// radial.v1.VideoService over the Scheduler, with gRPC's callback API: no handler blocks. Streams
// (Generate, Watch) pull events from the scheduler one write at a time, so a slow client holds at
// most one event in memory; the video bytes stay in the scheduler's job record.
#ifndef RADIAL_SERVER_VIDEO_SERVICE_H_
#define RADIAL_SERVER_VIDEO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "radial/v1/video_service.grpc.pb.h"
#include "scheduler.h"

namespace radial::server {

// The one place where an absl::Status becomes a grpc::Status (same code, same message).
grpc::Status ToGrpcStatus(const absl::Status& status);

class VideoService final : public v1::VideoService::CallbackService {
 public:
  explicit VideoService(Scheduler& scheduler) : scheduler_(scheduler) {}

  grpc::ServerWriteReactor<v1::JobEvent>* Generate(grpc::CallbackServerContext* context,
                                                   const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context, const v1::GenerateRequest* request,
                                   v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* Watch(grpc::CallbackServerContext* context,
                                                const v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
                                   v1::Job* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

 private:
  Scheduler& scheduler_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_VIDEO_SERVICE_H_
