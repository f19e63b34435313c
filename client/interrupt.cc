#include "interrupt.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace radial::client {
namespace {

// The pipe's write end for the handler (lock-free, so safe to read there); set before the handler
// is installed.
std::atomic<int> g_interrupt_pipe{-1};

void OnSigint(int) {
  const int saved = errno;
  const char byte = 'i';
  // Async-signal-safe; a full pipe already holds an interrupt, so a lost byte loses nothing.
  [[maybe_unused]] const ssize_t written = ::write(g_interrupt_pipe.load(std::memory_order_relaxed), &byte, 1);
  errno = saved;
}

}  // namespace

SigintHook::~SigintHook() {
  Disarm();
  if (thread_.joinable()) {
    const char stop = 'q';
    while (::write(pipe_[1], &stop, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  g_interrupt_pipe.store(-1);
  for (const int fd : pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

void SigintHook::Arm(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    callback_ = std::move(callback);
    armed_ = true;
    fired_ = false;
  }
  if (installed_) return;
  struct sigaction current {};
  if (::sigaction(SIGINT, nullptr, &current) != 0 || current.sa_handler == SIG_IGN) return;
  if (!thread_.joinable()) {
    if (::pipe2(pipe_, O_CLOEXEC) != 0) return;  // no pipe: Ctrl-C keeps its default action
    // The handler must never block; the reader blocks in read().
    ::fcntl(pipe_[1], F_SETFL, ::fcntl(pipe_[1], F_GETFL) | O_NONBLOCK);
    g_interrupt_pipe.store(pipe_[1]);
    thread_ = std::thread([this] { Loop(); });
  }
  struct sigaction action {};
  action.sa_handler = OnSigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // other threads' system calls go on rather than fail with EINTR
  if (::sigaction(SIGINT, &action, &previous_) == 0) installed_ = true;
}

void SigintHook::Disarm() {
  if (installed_) {
    ::sigaction(SIGINT, &previous_, nullptr);
    installed_ = false;
  }
  std::lock_guard<std::mutex> lock(mutex_);  // waits for a callback in progress
  armed_ = false;
  callback_ = nullptr;
}

void SigintHook::Loop() {
  while (true) {
    char byte = 0;
    const ssize_t got = ::read(pipe_[0], &byte, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0 || byte == 'q') return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (!armed_) continue;  // came in as the command finished: nothing left to interrupt
    if (!fired_) {
      fired_ = true;
      if (callback_) callback_();
      continue;
    }
    // A second Ctrl-C: the first one's call has not stopped; end the process as SIGINT would.
    ::signal(SIGINT, SIG_DFL);
    ::kill(::getpid(), SIGINT);
  }
}

}  // namespace radial::client
