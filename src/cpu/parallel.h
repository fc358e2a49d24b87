// A minimal parallel-for over [0, count): contiguous chunks, one per thread, joined before
// return. Results never depend on the thread count (each index is computed by one thread, the
// same way).
#pragma once

#include <cstdint>
#include <functional>

namespace moerouter {
namespace cpu {

/// Calls fn(begin, end) on disjoint chunks covering [0, count), using up to num_threads()
/// threads; chunks hold at least `grain` indices. Runs inline when one chunk suffices.
void parallel_for(std::int64_t count, std::int64_t grain,
                  const std::function<void(std::int64_t, std::int64_t)>& fn);

}  // namespace cpu
}  // namespace moerouter
