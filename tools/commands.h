// The moerouter CLI's subcommands.
#pragma once

#include <string>
#include <vector>

namespace moerouter {
namespace cli {

/// `moerouter demo [--model flash|pro] [--backend auto|cpu|gpu] [--seed S]`: routes a synthetic
/// DSV4-shaped dense and hash layer at decode and prefill batch sizes, checks each result
/// against the float64 oracle and prints a table. Returns the process exit code.
int run_demo(const std::vector<std::string>& args);

}  // namespace cli
}  // namespace moerouter
