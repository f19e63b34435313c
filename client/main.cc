// radialctl: the command-line client of radial-scheduler. All logic lives in radialctl.cc; this
// supplies the process's streams, environment and SIGINT.
#include <iostream>
#include <string>
#include <vector>

#include "interrupt.h"
#include "radialctl.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  radial::client::SigintHook sigint;
  radial::client::ClientEnvironment environment = radial::client::ProcessEnvironment();
  environment.interrupt = &sigint;
  return radial::client::RunRadialctl(args, std::cout, std::cerr, environment);
}
