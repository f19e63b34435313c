// radial.v1.VideoService over the Scheduler, with gRPC's callback API on raw bytes (raw_message.h
// says why): no handler blocks on another party. Streams (Generate, Watch) pull events from the
// scheduler one write at a time, so a slow client holds at most one event in memory; the video
// bytes stay in the scheduler's job record or its store.
#ifndef RADIAL_SERVER_RPC_VIDEO_SERVICE_H_
#define RADIAL_SERVER_RPC_VIDEO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "radial/v1/video_service.grpc.pb.h"
#include "metrics/scheduler_metrics.h"
#include "rpc/auth.h"
#include "scheduler/scheduler.h"

namespace radial::server {

using RawVideoService = v1::VideoService::WithRawCallbackMethod_Generate<
    v1::VideoService::WithRawCallbackMethod_Submit<v1::VideoService::WithRawCallbackMethod_Watch<
        v1::VideoService::WithRawCallbackMethod_GetJob<v1::VideoService::WithRawCallbackMethod_CancelJob<
            v1::VideoService::WithRawCallbackMethod_ListModels<v1::VideoService::WithRawCallbackMethod_ListJobs<
                v1::VideoService::WithRawCallbackMethod_DeleteJob<v1::VideoService::Service>>>>>>>>;

class VideoService final : public RawVideoService {
 public:
  // Every call is authenticated first (UNAUTHENTICATED before its request is looked at).
  // metrics may be null (no --metrics-listen).
  VideoService(Scheduler& scheduler, const Authenticator& authenticator, SchedulerMetrics* metrics = nullptr)
      : scheduler_(scheduler), authenticator_(authenticator), metrics_(metrics) {}

  using Writer = grpc::ServerWriteReactor<grpc::ByteBuffer>;
  using Unary = grpc::ServerUnaryReactor;
  using Context = grpc::CallbackServerContext;
  using Bytes = grpc::ByteBuffer;

  Writer* Generate(Context* context, const Bytes* request) override;
  Unary* Submit(Context* context, const Bytes* request, Bytes* response) override;
  Writer* Watch(Context* context, const Bytes* request) override;
  Unary* GetJob(Context* context, const Bytes* request, Bytes* response) override;
  Unary* CancelJob(Context* context, const Bytes* request, Bytes* response) override;
  Unary* ListModels(Context* context, const Bytes* request, Bytes* response) override;
  Unary* ListJobs(Context* context, const Bytes* request, Bytes* response) override;
  Unary* DeleteJob(Context* context, const Bytes* request, Bytes* response) override;

 private:
  Writer* Follow(const std::string& job_id, const absl::StatusOr<WatchCursor>& cursor);
  template <typename Request, typename Call>
  Unary* Answer(Context* context, const Bytes* raw, Bytes* response, Call&& call);
  absl::StatusOr<v1::Job> Submit(const v1::GenerateRequest& request, const absl::StatusOr<Caller>& caller,
                                 bool watching = false);
  Scheduler& scheduler_;
  const Authenticator& authenticator_;
  SchedulerMetrics* metrics_;
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_RPC_VIDEO_SERVICE_H_
