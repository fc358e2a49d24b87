// find_package(moerouter) consumer: built against an installed moerouter by the ctest
// "install.find_package" (tests/CMakeLists.txt).
#include <moerouter/cpu.h>
#include <cstdio>
int main() {
  float logits[4] = {1.f, 3.f, 2.f, 0.f}, w[2];
  int ids[2];
  moerouter::RouteLogitsParams p;
  p.logits = logits; p.weights = w; p.ids = ids; p.n = 1; p.experts = 4; p.k = 2; p.scale = 1.f;
  const auto st = moerouter::cpu::route_logits(p);
  std::printf("%s ids %d %d\n", st.to_string().c_str(), ids[0], ids[1]);
  return st.ok() && ids[0] == 1 && ids[1] == 2 ? 0 : 1;
}
