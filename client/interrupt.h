// Ctrl-C while radialctl follows a job's stream (generate, watch). The job runs on the server and
// an interrupt must not cancel it, but radialctl should end its call cleanly, keep what a resume
// needs and print how to resume. So while a stream is followed, SIGINT runs the command's callback
// instead of ending the process; at any other time SIGINT keeps its default action.
#ifndef RADIAL_CLIENT_INTERRUPT_H_
#define RADIAL_CLIENT_INTERRUPT_H_

#include <signal.h>

#include <functional>
#include <mutex>
#include <thread>

namespace radial::client {

// Where interrupts come from: SIGINT in the binary (SigintHook), the test itself in tests.
class InterruptHook {
 public:
  virtual ~InterruptHook() = default;
  // Until Disarm, an interrupt runs `callback` once, on a thread that is not a signal handler (so it
  // may take locks and cancel a gRPC call).
  virtual void Arm(std::function<void()> callback) = 0;
  // Back to the default. Once it returns, the callback is not running and will not run.
  virtual void Disarm() = 0;
};

// The process's SIGINT; at most one per process, since it owns the signal's disposition. Armed, it
// installs a handler that only writes a byte to a pipe; its own thread reads the pipe and runs the
// callback. A second SIGINT after the callback ran ends the process as SIGINT would (for a call that
// does not stop). A SIGINT that is ignored when Arm is called (nohup, a background job of a
// non-interactive shell) stays ignored.
class SigintHook : public InterruptHook {
 public:
  SigintHook() = default;
  SigintHook(const SigintHook&) = delete;
  SigintHook& operator=(const SigintHook&) = delete;
  ~SigintHook() override;  // disarms, stops the thread

  void Arm(std::function<void()> callback) override;
  void Disarm() override;

 private:
  void Loop();  // the thread: one byte per SIGINT, 'q' to stop

  std::mutex mutex_;  // guards callback_, armed_, fired_; held while the callback runs
  std::function<void()> callback_;
  bool armed_ = false;
  bool fired_ = false;
  bool installed_ = false;  // our handler is SIGINT's; previous_ is what it replaced
  struct sigaction previous_ {};
  int pipe_[2] = {-1, -1};  // [0]: read by thread_; [1]: written by the signal handler
  std::thread thread_;
};

// Arms `hook` (may be null: nothing) for the life of this object.
class ArmedInterrupt {
 public:
  ArmedInterrupt(InterruptHook* hook, std::function<void()> callback) : hook_(hook) {
    if (hook_ != nullptr) hook_->Arm(std::move(callback));
  }
  ArmedInterrupt(const ArmedInterrupt&) = delete;
  ArmedInterrupt& operator=(const ArmedInterrupt&) = delete;
  ~ArmedInterrupt() {
    if (hook_ != nullptr) hook_->Disarm();
  }

 private:
  InterruptHook* const hook_;
};

}  // namespace radial::client

#endif  // RADIAL_CLIENT_INTERRUPT_H_
