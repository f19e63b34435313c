// radialctl's exit codes and the names of gRPC status codes, shared by every command so that a
// script can tell "fix your request" from "the job failed" from "no server".
#ifndef RADIAL_CLIENT_EXIT_CODE_H_
#define RADIAL_CLIENT_EXIT_CODE_H_

#include <grpcpp/support/status.h>

#include <string>

namespace radial::client {

enum ExitCode : int {
  kExitOk = 0,
  kExitLocalError = 1,       // on this machine: the output file, or a stream that ended without a result
  kExitUsage = 2,            // the command line: unknown flag, bad number, missing argument
  kExitRejected = 3,         // the server refused the call (INVALID_ARGUMENT, NOT_FOUND, ...)
  kExitJobFailed = 4,        // the job ended FAILED
  kExitJobCancelled = 5,     // the job ended CANCELLED
  kExitUnreachable = 6,      // no answer from the server (UNAVAILABLE, DEADLINE_EXCEEDED), or TLS failed
  kExitUnauthenticated = 7,  // the server did not accept the credentials (UNAUTHENTICATED, PERMISSION_DENIED)
  kExitInterrupted = 130,    // Ctrl-C while following a job (128 + SIGINT, as shells report it); the job goes on
};

// The exit code for a call that ended with `code` (not OK).
ExitCode ExitCodeForRpc(grpc::StatusCode code);

// "INVALID_ARGUMENT" for 3, as in google.rpc.Code; "CODE_<n>" for a value outside it. The same
// numbers serve grpc::StatusCode and v1::Error.code.
std::string StatusCodeName(int code);

// "CODE_NAME: message", or just the name when the message is empty.
std::string DescribeStatus(int code, const std::string& message);

}  // namespace radial::client

#endif  // RADIAL_CLIENT_EXIT_CODE_H_
