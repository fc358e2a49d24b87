// The moerouter CLI's subcommands.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace moerouter {
namespace cli {

/// The value of option args[i] (the next argument; i moves to it). Throws when there is none.
inline const std::string& option_value(const std::vector<std::string>& args, std::size_t& i) {
  if (i + 1 >= args.size()) throw std::invalid_argument(args[i] + " needs a value");
  return args[++i];
}

/// A --backend value, checked: auto, cpu or gpu.
inline std::string backend_option(const std::string& v) {
  if (v != "auto" && v != "cpu" && v != "gpu") {
    throw std::invalid_argument("--backend must be auto, cpu or gpu, got '" + v + "'");
  }
  return v;
}

/// `moerouter demo [--model flash|pro] [--backend auto|cpu|gpu] [--seed S]`: routes a synthetic
/// DSV4-shaped dense and hash layer at decode and prefill batch sizes, checks each result
/// against the float64 oracle and prints a table. Returns the process exit code.
int run_demo(const std::vector<std::string>& args);

/// `moerouter make-test-model DIR [--model flash|pro] [--layers N] [--shards S] [--hf]
/// [--single-file] [--no-mtp] [--tid2eid-int32] [--hidden H] [--experts E] [--vocab V] [--k K]`:
/// writes a synthetic DSV4-shaped checkpoint in the real format.
int run_make_test_model(const std::vector<std::string>& args);

/// `moerouter route --model DIR --layer L --tokens FILE [--hidden FILE] [--out PREFIX]`:
/// routes tokens through one layer of a checkpoint; writes PREFIX.ids.npy, PREFIX.weights.npy
/// and PREFIX.csv.
int run_route(const std::vector<std::string>& args);

/// `moerouter topk [--rows N] [--length L] [--k K] [--dtype f32|bf16] [--unsorted]
/// [--backend auto|cpu|gpu] [--reps R] [--seed S]`: top-k over synthetic normal rows on the CPU
/// backend (checked against the float64 oracle) and, where present, the GPU (checked bit for bit
/// against the CPU backend), with the time per call. Returns 1 on a mismatch.
int run_topk(const std::vector<std::string>& args);

}  // namespace cli
}  // namespace moerouter
