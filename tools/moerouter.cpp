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
               "  demo [--model flash|pro] [--backend auto|cpu|gpu] [--seed S] [--prefill N]\n"
               "      Route a synthetic DeepSeek-V4 layer (dense and hash) at decode and prefill\n"
               "      batch sizes on the best backend present, check every result against the\n"
               "      float64 oracle, and print a table. Exit code 1 if any check fails.\n"
               "      --model DIR runs it on a checkpoint's first hash and first dense layer.\n"
               "  make-test-model DIR [--model flash|pro] [--layers N] [--shards S] [--hf]\n"
               "                  [--single-file] [--no-mtp] [--tid2eid-int32] [--hidden H]\n"
               "                  [--experts E] [--vocab V] [--k K] [--seed S]\n"
               "      Write a small synthetic DeepSeek-V4-shaped checkpoint in the real format\n"
               "      (config.json, sharded safetensors + index; hash and dense layers, MTP).\n"
               "  route --model DIR --layer L --tokens FILE [--hidden FILE] [--out PREFIX]\n"
               "      Route tokens (.npy int32/int64 or a text file of ids) through one layer;\n"
               "      hidden states from a .npy (float32, or uint16 bf16 bits) [n, H], else\n"
               "      synthetic. Writes PREFIX.ids.npy, PREFIX.weights.npy and PREFIX.csv.\n"
               "  topk [--rows N] [--length L] [--k K] [--dtype f32|bf16] [--unsorted]\n"
               "       [--backend auto|cpu|gpu] [--reps R] [--seed S]\n"
               "      Top-k over N synthetic rows of L normal values (default 64 x 65536, k = 512:\n"
               "      the sparse-attention indexer's), on the CPU backend (first rows checked\n"
               "      against the float64 oracle) and on the GPU when present (checked bit for\n"
               "      bit against the CPU backend); prints the time per call. Exit code 1 on a\n"
               "      mismatch. (Cold-L2 GPU figures: bench/radix_topk_bench.)\n"
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
    if (cmd == "make-test-model") return moerouter::cli::run_make_test_model(args);
    if (cmd == "route") return moerouter::cli::run_route(args);
    if (cmd == "topk") return moerouter::cli::run_topk(args);
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
