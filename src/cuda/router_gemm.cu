// The router GEMM through cuBLASLt: logits fp32 [n, E] = x bf16 [n, H] * W bf16 [E, H]^T.
//
// cuBLASLt is column-major: a row-major [n, E] output is a column-major E x n matrix D, and
// D = op_T(A) * B with A = W viewed as column-major H x E (ld H) and B = x viewed as
// column-major H x n (ld x_stride).
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "common.cuh"
#include "moerouter/cuda.h"
#include "moerouter/detail/params.h"

namespace moerouter {
namespace cuda {
namespace {

// cublasGetStatusName lives in libcublas, which we do not link: name the codes cuBLASLt returns.
const char* lt_status_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cublasStatus_t";
  }
}

Status lt_status(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::success();
  return Status(StatusCode::kCudaError, std::string("router gemm: ") + what + " failed: " +
                                            lt_status_name(st) + " (" +
                                            std::to_string(int(st)) + ")");
}

#define MOER_LT_CHECK(expr, what)                                   \
  do {                                                              \
    const cublasStatus_t moer_lt_ = (expr);                         \
    if (moer_lt_ != CUBLAS_STATUS_SUCCESS) return lt_status(moer_lt_, what); \
  } while (0)

// The largest power of two (<= 256) dividing the address.
std::uint32_t alignment_of(const void* p) {
  std::uint32_t a = 256;
  while (a > 1 && reinterpret_cast<std::uintptr_t>(p) % a != 0) a /= 2;
  return a;
}

}  // namespace

struct RouterGemm::Impl {
  // A matmul descriptor, its layouts and the algorithm chosen for one shape.
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         std::uint32_t, std::uint32_t, std::uint32_t>;

  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::mutex mu;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& kv : plans) destroy(kv.second);
    if (workspace != nullptr) (void)cudaFree(workspace);
    if (handle != nullptr) (void)cublasLtDestroy(handle);
  }

  static void destroy(Plan& p) {
    if (p.a) (void)cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) (void)cublasLtMatrixLayoutDestroy(p.b);
    if (p.d) (void)cublasLtMatrixLayoutDestroy(p.d);
    if (p.op) (void)cublasLtMatmulDescDestroy(p.op);
    p = Plan{};
  }

  Status make_plan(const Key& key, Plan& plan) {
    const auto [n, hidden, experts, x_stride, logits_stride, align_x, align_w, align_d] = key;
    MOER_LT_CHECK(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                  "cublasLtMatmulDescCreate");
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    MOER_LT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                 sizeof(trans_a)),
                  "set TRANSA");
    MOER_LT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                 sizeof(trans_b)),
                  "set TRANSB");
    MOER_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, std::uint64_t(hidden),
                                             std::uint64_t(experts), hidden),
                  "layout W");
    MOER_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, std::uint64_t(hidden),
                                             std::uint64_t(n), x_stride),
                  "layout x");
    MOER_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.d, CUDA_R_32F, std::uint64_t(experts),
                                             std::uint64_t(n), logits_stride),
                  "layout logits");
    cublasLtMatmulPreference_t pref = nullptr;
    MOER_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const auto choose = [&]() -> Status {
      const std::uint64_t ws = workspace_bytes;
      MOER_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(
                        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                    "set MAX_WORKSPACE_BYTES");
      // Alignments of W (A), x (B), logits (C and D).
      const std::uint32_t aligns[4] = {align_w, align_x, align_d, align_d};
      const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
      for (int i = 0; i < 4; ++i) {
        MOER_LT_CHECK(
            cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &aligns[i], sizeof(aligns[i])),
            "set MIN_ALIGNMENT");
      }
      MOER_LT_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, plan.op, plan.a, plan.b, plan.d,
                                                   plan.d, pref, 1, &result, &found),
                    "cublasLtMatmulAlgoGetHeuristic");
      return Status::success();
    };
    const Status st = choose();
    (void)cublasLtMatmulPreferenceDestroy(pref);
    if (!st.ok()) return st;
    if (found == 0) {
      return Status(StatusCode::kCudaError,
                    "router gemm: cuBLASLt has no algorithm for n=" + std::to_string(n) +
                        " hidden=" + std::to_string(hidden) + " experts=" +
                        std::to_string(experts));
    }
    plan.algo = result.algo;
    return Status::success();
  }
};

RouterGemm::RouterGemm() : impl_(new Impl) {}
RouterGemm::~RouterGemm() = default;

bool RouterGemm::initialized() const { return impl_->handle != nullptr; }

Status RouterGemm::init(std::size_t workspace_bytes) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->handle != nullptr) return Status::success();
  if (workspace_bytes > 0) {
    MOER_RETURN_IF_ERROR_CUDA(detail::cuda_status(cudaMalloc(&impl_->workspace, workspace_bytes),
                                                  "router gemm: cudaMalloc(workspace)"));
  }
  impl_->workspace_bytes = workspace_bytes;
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t st = cublasLtCreate(&handle);
  if (st != CUBLAS_STATUS_SUCCESS) {
    (void)cudaFree(impl_->workspace);
    impl_->workspace = nullptr;
    return lt_status(st, "cublasLtCreate");
  }
  impl_->handle = handle;
  return Status::success();
}

Status RouterGemm::logits(const void* x, std::int64_t x_stride, const void* w, std::int64_t n,
                          std::int64_t hidden, std::int64_t experts, float* logits,
                          std::int64_t logits_stride, cudaStream_t stream) {
  if (impl_->handle == nullptr) {
    return Status(StatusCode::kNullPointer, "router gemm: init() was not called");
  }
  if (n < 0 || hidden < 1 || experts < 1) {
    return Status(StatusCode::kInvalidArgument,
                  "router gemm: need n >= 0, hidden >= 1, experts >= 1, got n=" +
                      std::to_string(n) + " hidden=" + std::to_string(hidden) +
                      " experts=" + std::to_string(experts));
  }
  if (n == 0) return Status::success();
  if (x == nullptr || w == nullptr || logits == nullptr) {
    return Status(StatusCode::kNullPointer, "router gemm: x, w and logits must not be null");
  }
  x_stride = moerouter::detail::stride_or(x_stride, hidden);
  logits_stride = moerouter::detail::stride_or(logits_stride, experts);
  if (x_stride < hidden || logits_stride < experts) {
    return Status(StatusCode::kShapeMismatch,
                  "router gemm: x_stride must be >= hidden and logits_stride >= experts, got " +
                      std::to_string(x_stride) + " and " + std::to_string(logits_stride));
  }
  const Impl::Key key{n, hidden, experts, x_stride, logits_stride, alignment_of(x),
                      alignment_of(w), alignment_of(logits)};
  Impl::Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->plans.find(key);
    if (it == impl_->plans.end()) {
      Impl::Plan fresh;
      const Status st = impl_->make_plan(key, fresh);
      if (!st.ok()) {
        Impl::destroy(fresh);
        return st;
      }
      it = impl_->plans.emplace(key, fresh).first;
    }
    plan = &it->second;
  }
  const float alpha = 1.0f, beta = 0.0f;
  MOER_LT_CHECK(cublasLtMatmul(impl_->handle, plan->op, &alpha, w, plan->a, x, plan->b, &beta,
                               logits, plan->d, logits, plan->d, &plan->algo, impl_->workspace,
                               impl_->workspace_bytes, stream),
                "cublasLtMatmul");
  return Status::success();
}

}  // namespace cuda
}  // namespace moerouter
