// A one-line progress bar on stderr.
#pragma once

#include <unistd.h>

#include <cstdio>

namespace moerouter {
namespace cli {

/// Redrawn in place on a terminal; only the final state when stderr is a file or pipe.
inline void progress_bar(const char* what, int done, int total) {
  if (done < total && !::isatty(2)) return;
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  std::fprintf(stderr, "\r%s [", what);
  for (int i = 0; i < kWidth; ++i) std::fputc(i < filled ? '#' : '.', stderr);
  std::fprintf(stderr, "] %d/%d", done, total);
  if (done >= total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace cli
}  // namespace moerouter
