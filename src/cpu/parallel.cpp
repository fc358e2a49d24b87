#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "moerouter/cpu.h"

namespace moerouter {
namespace cpu {
namespace {
std::atomic<int> g_threads{0};
}  // namespace

void set_num_threads(int threads) { g_threads.store(threads < 0 ? 0 : threads); }

int num_threads() {
  const int t = g_threads.load();
  if (t > 0) return t;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(std::int64_t count, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (count <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  const std::int64_t chunks =
      std::min<std::int64_t>(num_threads(), (count + grain - 1) / grain);
  if (chunks <= 1) {
    fn(0, count);
    return;
  }
  const std::int64_t per = (count + chunks - 1) / chunks;
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(chunks - 1));
  for (std::int64_t c = 1; c < chunks; ++c) {
    const std::int64_t b = c * per, e = std::min(count, b + per);
    if (b < e) workers.emplace_back(fn, b, e);
  }
  fn(0, std::min(count, per));
  for (auto& t : workers) t.join();
}

}  // namespace cpu
}  // namespace moerouter
