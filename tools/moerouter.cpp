// moerouter: the command-line tool.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: moerouter <command> [options]\n"
               "\n"
               "commands:\n"
               "  demo [--model flash|pro] [--backend auto|cpu|gpu] [--seed S]\n"
               "      Route a synthetic DeepSeek-V4 layer (dense and hash) at decode and prefill\n"
               "      batch sizes on the best backend present, check every result against the\n"
               "      float64 oracle, and print a table. Exit code 1 if any check fails.\n"
               "  help\n"
               "      This text.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "demo") return moerouter::cli::run_demo(args);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "moerouter: unknown command '%s'\n\n", cmd.c_str());
    usage(stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moerouter %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
