// The HTTP endpoint of every radial process (--metrics-listen): GET /metrics, the registry in the
// Prometheus text format, and GET /healthz, readiness as a status code for a kubelet probe.
//
// Why not prometheus-cpp's pull Exposer: Debian's civetweb, under it, starts its threads with a
// fixed 100 KiB stack, and glibc carves every thread's static TLS out of its stack; LibTorch and
// the CUDA libraries it loads need about 190 KiB of static TLS, so in any process that links
// LibTorch (radial-worker, radial-standalone) pthread_create fails (EINVAL) and the Exposer
// throws. Its handler also answers 200 whatever a gauge says, so it could not serve a probe.
//
// One thread serves one connection at a time (a scrape and a probe are small): a request must
// arrive within 2 s and fit in 8 KiB, the answer is written with a 2 s send timeout, then the
// connection is closed (HTTP/1.0 style). No TLS, no authentication: bind it to an address only
// the scraper and the kubelet reach.
#ifndef RADIAL_COMMON_METRICS_SERVER_H_
#define RADIAL_COMMON_METRICS_SERVER_H_

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace radial::common {

class MetricsServer {
 public:
  // Listens on HOST:PORT ("127.0.0.1:0" picks a free port; "[::1]:9100" for IPv6; ":9100" or
  // "0.0.0.0:9100" for every interface) and serves until destroyed:
  //   GET /metrics  200, the text exposition of `registry`
  //   GET /healthz  200 "ok" when `health` returns OK, else 503 with its message
  //   other paths   404; other methods 405 (HEAD is answered like GET, without the body)
  // `health` runs on the server's thread and must be quick. INVALID_ARGUMENT for a malformed
  // address, UNAVAILABLE for one that cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              std::shared_ptr<prometheus::Registry> registry,
                                                              std::function<absl::Status()> health);
  ~MetricsServer();  // stops listening and joins the thread (after the connection it serves)

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer() = default;
  void Serve();
  void Answer(int connection);

  std::shared_ptr<prometheus::Registry> registry_;
  std::function<absl::Status()> health_;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a pipe: the destructor writes to stop the poll
  int port_ = 0;
  std::thread thread_;
};

}  // namespace radial::common

#endif  // RADIAL_COMMON_METRICS_SERVER_H_
