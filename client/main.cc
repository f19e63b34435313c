// radialctl: the command-line client of radial-scheduler. All logic lives in radialctl.cc.
#include <iostream>
#include <string>
#include <vector>

#include "radialctl.h"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return radial::client::RunRadialctl(args, std::cout, std::cerr, radial::client::ProcessEnvironment());
}
