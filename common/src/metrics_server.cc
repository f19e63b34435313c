#include "radial/common/metrics_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "radial/common/echo.h"

namespace radial::common {
namespace {

constexpr size_t kMaxRequestBytes = 8 << 10;
constexpr int kIoTimeoutSeconds = 2;

struct HostPort {
  std::string host;  // empty: every interface
  std::string port;
};

absl::StatusOr<HostPort> ParseListen(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics-listen: got ", common::Echo(listen), ", expected HOST:PORT with a port in 0..65535"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return HostPort{host, std::to_string(port)};
}

void SetTimeouts(int fd) {
  timeval timeout{};
  timeout.tv_sec = kIoTimeoutSeconds;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t sent = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return;  // the peer left or the send timed out: nothing more to do
    data.remove_prefix(static_cast<size_t>(sent));
  }
}

// The request's head (up to the blank line), or what arrived before the timeout or the size cap.
std::string ReadHead(int fd) {
  std::string head;
  char buffer[1024];
  while (head.size() < kMaxRequestBytes && head.find("\r\n\r\n") == std::string::npos &&
         head.find("\n\n") == std::string::npos) {
    const ssize_t got = recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    head.append(buffer, static_cast<size_t>(got));
  }
  return head;
}

void Respond(int fd, int code, const char* reason, const char* content_type, const std::string& body, bool head_only) {
  std::string response = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n");
  if (!head_only) response += body;
  SendAll(fd, response);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                    std::shared_ptr<prometheus::Registry> registry,
                                                                    std::function<absl::Status()> health) {
  absl::StatusOr<HostPort> address = ParseListen(listen);
  if (!address.ok()) return address.status();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int error =
          getaddrinfo(address->host.empty() ? nullptr : address->host.c_str(), address->port.c_str(), &hints, &found);
      error != 0) {
    return absl::UnavailableError(absl::StrCat("metrics-listen: got ", common::Echo(listen),
                                               ", cannot resolve its host (", gai_strerror(error), ")"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  std::string bind_error = "no address";
  for (const addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
    const int fd = socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC, candidate->ai_protocol);
    if (fd < 0) continue;
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 && ::listen(fd, 16) == 0) {
      server->listen_fd_ = fd;
      break;
    }
    bind_error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  if (server->listen_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("metrics-listen: got ", common::Echo(listen),
                                               ", expected a host:port this process can bind (", bind_error, ")"));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length) == 0) {
    char port[16] = {0};
    if (getnameinfo(reinterpret_cast<sockaddr*>(&bound), length, nullptr, 0, port, sizeof(port), NI_NUMERICSERV) == 0) {
      server->port_ = std::atoi(port);
    }
  }
  if (pipe2(server->wake_fds_, O_CLOEXEC) != 0) {
    return absl::UnavailableError(absl::StrCat("metrics-listen: cannot create a pipe (", std::strerror(errno), ")"));
  }
  server->registry_ = std::move(registry);
  server->health_ = std::move(health);
  server->thread_ = std::thread([raw = server.get()] { raw->Serve(); });
  return server;
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    const char stop = 1;
    while (write(wake_fds_[1], &stop, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (const int fd : {listen_fd_, wake_fds_[0], wake_fds_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void MetricsServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fds_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) {  // the client left first, or out of descriptors: do not spin on it
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    SetTimeouts(connection);
    Answer(connection);
    close(connection);
  }
}

void MetricsServer::Answer(int connection) {
  const std::string head = ReadHead(connection);
  const std::string_view line = std::string_view(head).substr(0, head.find_first_of("\r\n"));
  const size_t first_space = line.find(' ');
  if (first_space == std::string_view::npos) {
    Respond(connection, 400, "Bad Request", "text/plain; charset=utf-8", "bad request\n", false);
    return;
  }
  const std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1);
  target = target.substr(0, target.find(' '));
  target = target.substr(0, target.find('?'));
  const bool head_only = method == "HEAD";
  if (method != "GET" && !head_only) {
    Respond(connection, 405, "Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n", false);
    return;
  }
  if (target == "/metrics") {
    const std::string body = prometheus::TextSerializer().Serialize(registry_->Collect());
    Respond(connection, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head_only);
  } else if (target == "/healthz") {
    const absl::Status health = health_ ? health_() : absl::OkStatus();
    if (health.ok()) {
      Respond(connection, 200, "OK", "text/plain; charset=utf-8", "ok\n", head_only);
    } else {
      Respond(connection, 503, "Service Unavailable", "text/plain; charset=utf-8", absl::StrCat(health.message(), "\n"),
              head_only);
    }
  } else {
    Respond(connection, 404, "Not Found", "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n",
            head_only);
  }
}

}  // namespace radial::common
