// radialctl as a library: one call runs one command line against a radial-scheduler, so the tests
// drive exactly what the binary does. main.cc only supplies the process's streams and environment.
#ifndef RADIAL_CLIENT_RADIALCTL_H_
#define RADIAL_CLIENT_RADIALCTL_H_

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "progress_display.h"

namespace radial::client {

class InterruptHook;  // interrupt.h

// What the process around radialctl provides; tests fill it in directly.
struct ClientEnvironment {
  bool stderr_is_terminal = false;                 // redraw one progress line instead of printing plain lines
  std::string default_server = "localhost:50051";  // when --server is absent
  std::string default_token;                       // when --token is absent ($RADIAL_TOKEN); empty: none
  std::string default_tls_ca;                      // when --tls-ca is absent ($RADIAL_TLS_CA); empty: no TLS
  // How long to wait for a connection before giving up with exit code 6. A refused connection
  // fails at once; this bounds a host that does not answer.
  std::chrono::milliseconds connect_timeout{5000};
  // Deadline of the unary calls (submit, status, cancel, models). Streams have none: a job may run
  // for a long time.
  std::chrono::milliseconds call_timeout{30000};
  std::function<Clock::time_point()> now = Clock::now;
  // Ctrl-C while generate or watch follows its job: the call ends (the job goes on), the file is
  // kept for `watch -o` and the resume command printed, exit 130. Null: SIGINT keeps its default
  // action. Not owned.
  InterruptHook* interrupt = nullptr;
};

// Runs one command line (the arguments after the program name). Results go to `out`; progress,
// diagnostics and errors (prefixed "radialctl: ") to `err`. Returns the exit code (see exit_code.h).
// Never throws, and nothing the server or the user sends makes it abort.
int RunRadialctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                 const ClientEnvironment& environment);

// The environment of this process: isatty(stderr), $RADIAL_SERVER, $RADIAL_TOKEN and $RADIAL_TLS_CA;
// `interrupt` is left null (main.cc owns the process's SigintHook).
ClientEnvironment ProcessEnvironment();

}  // namespace radial::client

#endif  // RADIAL_CLIENT_RADIALCTL_H_
