// The fused CPU kernel: whole epochs of many D-H-1 networks in plain C++ loops.
//
// The eager and native loops run each epoch as a dozen ATen ops over all models; at the
// notebook's sizes (D=4, H=8..14, 112 rows) every op costs more in dispatch than in arithmetic.
// Here one pass over the rows does a model's forward pass, loss and backward pass at once, and
// models ride in the lanes of a SIMD vector: kLanes models per group, every lane running the
// same IEEE float32 operations. A model's results therefore do not depend on its lane, its
// group, the other models, the thread count or the instruction set the function runs on:
//  - the arithmetic is only +, -, *, /, sqrt and comparisons, each correctly rounded;
//  - exp and log1p are this file's own polynomials, not libm's (whose vector and scalar
//    versions round differently);
//  - the build passes -ffp-contract=off, so no a*b+c is fused on one instruction set and not
//    on another.
// The result equals the eager engine's to float32 rounding, not bit for bit: sums run in row
// order here, in MKL's blocked order there. On x86 the training threads flush subnormal floats
// to zero (FTZ and DAZ): a model whose exp() underflows (the notebook's accumulating rule swings
// its logits far out) would otherwise run 8-10x slower on microcode assists, for differences
// below 1.2e-38.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fused.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_getcsr, _mm_setcsr
#endif

namespace irismodel {
namespace {

constexpr int64_t kLanes = 8;
typedef float vfloat __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kLanes * sizeof(int32_t))));

// Subnormal floats read and written as zero in this thread while it lives (x86: the MXCSR's
// FTZ and DAZ bits), as they were before once it ends.
class FlushSubnormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

#define IRIS_INLINE static inline __attribute__((always_inline))

// An array of vectors on heap memory aligned to the vector's size (std::vector does not align
// vector types, and aligned_alloc is not aligned under every allocator Python may run with).
class Vectors {
 public:
  explicit Vectors(int64_t count)
      : raw_(std::malloc(static_cast<size_t>(count + 1) * sizeof(vfloat))), count_(count) {
    if (raw_ == nullptr) throw std::bad_alloc();
    const auto address = reinterpret_cast<uintptr_t>(raw_);
    data_ = reinterpret_cast<vfloat*>((address + sizeof(vfloat) - 1) & ~(sizeof(vfloat) - 1));
    fill(0.0f);
  }
  Vectors(const Vectors&) = delete;
  Vectors& operator=(const Vectors&) = delete;
  ~Vectors() { std::free(raw_); }
  vfloat* data() { return data_; }
  vfloat& operator[](int64_t i) { return data_[i]; }
  void fill(float value) {
    for (int64_t i = 0; i < count_; ++i) data_[i] = vfloat{} + value;
  }

 private:
  void* raw_;
  vfloat* data_;
  int64_t count_;
};

IRIS_INLINE vfloat splat(float value) { return vfloat{} + value; }

IRIS_INLINE vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

IRIS_INLINE vfloat vabs(vfloat a) { return a < 0.0f ? -a : a; }

// Lane by lane: sqrt is correctly rounded everywhere, and -fno-math-errno lets it vectorize.
IRIS_INLINE vfloat vsqrt(vfloat a) {
  vfloat root;
  for (int64_t lane = 0; lane < kLanes; ++lane) root[lane] = std::sqrt(a[lane]);
  return root;
}

// e^x for x <= 0, relative error below 2e-7 (Cephes expf). Inputs below -87 give e^-87, which
// keeps every result a normal float; NaN stays NaN.
IRIS_INLINE vfloat exp_nonpositive(vfloat x) {
  x = x < -87.0f ? splat(-87.0f) : x;
  // n = round(x / ln 2), by the 1.5 * 2^23 trick (round to nearest even, |x / ln 2| < 2^22)
  const vfloat shifter = splat(12582912.0f);
  vfloat n = (x * 1.44269504088896341f + shifter) - shifter;
  vfloat r = x - n * 0.693359375f;  // Cody-Waite: ln 2 in two parts
  r = r - n * -2.12194440e-4f;
  vfloat p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  vint bits = (__builtin_convertvector(n, vint) + 127) << 23;  // 2^n, n in [-126, 0]
  return p * reinterpret_cast<vfloat&>(bits);
}

// log(1 + t) for t in [0, 1], as 2 atanh(t / (2 + t)): no cancellation for small t. The series
// in s = t / (2 + t) <= 1/3 is cut after s^15, where the rest is below 1e-9 relative.
IRIS_INLINE vfloat log1p_unit(vfloat t) {
  vfloat s = t / (t + 2.0f);
  vfloat s2 = s * s;
  vfloat p = splat(1.0f / 15.0f);
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return (s + s) * p;
}

enum class Rule { kSgd, kMomentum, kAdam, kAccumulate };

Rule rule_of(const std::string& optimizer) {
  if (optimizer == "sgd" || optimizer == "manual") return Rule::kSgd;
  if (optimizer == "momentum") return Rule::kMomentum;
  if (optimizer == "adam") return Rule::kAdam;
  if (optimizer == "manual-no-zero-grad") return Rule::kAccumulate;
  throw std::invalid_argument("irismodel fused kernel: unknown optimizer '" + optimizer + "'");
}

struct Problem {
  const vfloat* x;  // (N, D) features, each broadcast to a vector, row-major
  const float* y;   // (N,) labels, 0 or 1
  int64_t n, d, h, epochs;
  Rule rule;
  float learning_rate;
  double learning_rate_double, momentum, beta1, beta2, eps;
  const std::atomic<bool>* abandon;  // this call's own stop: another worker failed
};

// Whether a group should stop before its next epoch: the process-wide stop request, or this
// call giving up. Two relaxed loads per epoch of a group (thousands of flops): free, given the
// __restrict__ of `gradient`.
IRIS_INLINE bool should_stop(const Problem& problem) {
  return stop_requested() || problem.abandon->load(std::memory_order_relaxed);
}

// Parameters of one group, lane-major: element i of model m sits at [i * kLanes + m]. Order:
// fc1.weight (H*D, row-major as in nn.Linear), fc1.bias (H), fc2.weight (H), fc2.bias (1).
int64_t parameter_count(const Problem& problem) { return problem.h * (problem.d + 2) + 1; }

// Rows are processed in blocks: the block's hidden activations (kRowBlock x H vectors) stay in
// cache between the forward and the backward pass, whatever N is.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kMaxFeatures = 16;  // fc1's gradient for one hidden unit lives in registers

// One epoch's forward pass, loss and gradient, summed in a fixed order: rows in blocks of
// kRowBlock, in order; within a block, row by row. Returns the sum of the rows' losses.
// The buffers never overlap (__restrict__), so the forward pass keeps a hidden unit's weights in
// registers over the rows. GCC no longer proves that by itself once the epoch loop reads an
// atomic (the stop request): without these, that check made the kernel 3% slower.
template <int64_t kFixedD>  // kFixedD > 0: D known at compile time (the loops unroll)
IRIS_INLINE vfloat gradient(const Problem& problem, const vfloat* __restrict__ theta,
                            vfloat* __restrict__ grad, vfloat* __restrict__ hidden,
                            vfloat* __restrict__ logit, vfloat* __restrict__ delta) {
  const int64_t n = problem.n, h = problem.h;
  const int64_t d = kFixedD > 0 ? kFixedD : problem.d;
  const vfloat* w1 = theta;
  const vfloat* b1 = w1 + h * d;
  const vfloat* w2 = b1 + h;
  const vfloat* b2 = w2 + h;
  vfloat* g_w1 = grad;
  vfloat* g_b1 = g_w1 + h * d;
  vfloat* g_w2 = g_b1 + h;
  vfloat* g_b2 = g_w2 + h;
  const float rows = static_cast<float>(n);
  vfloat loss = splat(0.0f);
  for (int64_t first = 0; first < n; first += kRowBlock) {
    const int64_t count = std::min(kRowBlock, n - first);
    const vfloat* x = problem.x + first * d;
    // forward: hidden = relu(W1 x + b1), logit = w2 . hidden + b2 (summed over units in order)
    for (int64_t r = 0; r < count; ++r) logit[r] = *b2;
    for (int64_t j = 0; j < h; ++j) {
      const vfloat* w = w1 + j * d;
      const vfloat bias = b1[j], out = w2[j];
      vfloat* a = hidden + j * kRowBlock;
      for (int64_t r = 0; r < count; ++r) {
        vfloat z = bias;
        for (int64_t k = 0; k < d; ++k) z = z + w[k] * x[r * d + k];
        z = z < 0.0f ? splat(0.0f) : z;  // relu, NaN kept as torch.relu keeps it
        a[r] = z;
        logit[r] = logit[r] + out * z;
      }
    }
    // mean BCE with logits: softplus((1 - 2y) z); its gradient: (sigmoid(z) - y) / N
    vfloat g_bias = splat(0.0f);
    for (int64_t r = 0; r < count; ++r) {
      const vfloat z = logit[r];
      const float target = problem.y[first + r];
      const vfloat t = exp_nonpositive(-vabs(z));
      const vfloat inverse = 1.0f / (t + 1.0f);
      const vfloat probability = z >= 0.0f ? inverse : t * inverse;
      loss = loss + (vmax(z * (1.0f - 2.0f * target), splat(0.0f)) + log1p_unit(t));
      delta[r] = (probability - target) / rows;
      g_bias = g_bias + delta[r];
    }
    *g_b2 = *g_b2 + g_bias;
    // backward, one hidden unit at a time: its gradients stay in registers over the block
    for (int64_t j = 0; j < h; ++j) {
      const vfloat out = w2[j];
      const vfloat* a = hidden + j * kRowBlock;
      vfloat g_out = splat(0.0f), g_in_bias = splat(0.0f);
      vfloat g_in[kFixedD > 0 ? kFixedD : kMaxFeatures];
      for (int64_t k = 0; k < d; ++k) g_in[k] = splat(0.0f);
      for (int64_t r = 0; r < count; ++r) {
        g_out = g_out + a[r] * delta[r];
        const vfloat da = a[r] <= 0.0f ? splat(0.0f) : out * delta[r];  // threshold_backward
        g_in_bias = g_in_bias + da;
        for (int64_t k = 0; k < d; ++k) g_in[k] = g_in[k] + da * x[r * d + k];
      }
      g_w2[j] = g_w2[j] + g_out;
      g_b1[j] = g_b1[j] + g_in_bias;
      for (int64_t k = 0; k < d; ++k) g_w1[j * d + k] = g_w1[j * d + k] + g_in[k];
    }
  }
  return loss;
}

// Train one group of kLanes models in place; `curves` is (E, kLanes), epoch-major. Returns the
// number of epochs done: fewer than problem.epochs when it stopped early (`should_stop`).
template <int64_t kFixedD>
IRIS_INLINE int64_t train_group(const Problem& problem, vfloat* theta, vfloat* curves) {
  const int64_t count = parameter_count(problem);
  // state1: momentum's buffer, Adam's first moment or the accumulated gradient; state2: Adam's
  // second moment. Both start at zero.
  Vectors grad(count), state1(problem.rule == Rule::kSgd ? 0 : count),
      state2(problem.rule == Rule::kAdam ? count : 0), hidden(kRowBlock * problem.h),
      logit(kRowBlock), delta(kRowBlock);
  const float rows = static_cast<float>(problem.n);
  const float lr = problem.learning_rate;

  for (int64_t epoch = 0; epoch < problem.epochs; ++epoch) {
    if (should_stop(problem)) return epoch;
    grad.fill(0.0f);
    const vfloat loss = gradient<kFixedD>(problem, theta, grad.data(), hidden.data(),
                                          logit.data(), delta.data());
    curves[epoch] = loss / rows;
    // the update rules of irismodel.optimizers.FlatUpdate, element by element
    switch (problem.rule) {
      case Rule::kSgd:
        for (int64_t i = 0; i < count; ++i) theta[i] = theta[i] + -lr * grad[i];
        break;
      case Rule::kMomentum: {
        const float momentum = static_cast<float>(problem.momentum);
        for (int64_t i = 0; i < count; ++i) {
          state1[i] = epoch == 0 ? grad[i] : state1[i] * momentum + grad[i];
          theta[i] = theta[i] + -lr * state1[i];
        }
        break;
      }
      case Rule::kAccumulate:  // the notebook's second loop: .grad never reset
        for (int64_t i = 0; i < count; ++i) {
          state1[i] = state1[i] + grad[i];
          theta[i] = theta[i] - state1[i] * lr;
        }
        break;
      case Rule::kAdam: {
        const double step = static_cast<double>(epoch + 1);
        const float weight1 = static_cast<float>(1 - problem.beta1);
        const float beta2 = static_cast<float>(problem.beta2);
        const float weight2 = static_cast<float>(1 - problem.beta2);
        const float step_size = static_cast<float>(
            -problem.learning_rate_double / (1 - std::pow(problem.beta1, step)));
        const float root2 = static_cast<float>(std::sqrt(1 - std::pow(problem.beta2, step)));
        const float eps = static_cast<float>(problem.eps);
        for (int64_t i = 0; i < count; ++i) {
          state1[i] = state1[i] + (grad[i] - state1[i]) * weight1;
          state2[i] = state2[i] * beta2 + grad[i] * grad[i] * weight2;
          theta[i] = theta[i] + step_size * (state1[i] / (vsqrt(state2[i]) / root2 + eps));
        }
        break;
      }
    }
  }
  return problem.epochs;
}

// One copy of the kernel per instruction set; the loader picks the best the CPU has. All copies
// give the same bits (see the top of this file).
// (No AVX-512 copy: 256-bit vectors gain nothing from AVX-512F without AVX-512VL.)
#if defined(__x86_64__) && defined(__GNUC__)
#define IRIS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define IRIS_CLONES
#endif

IRIS_CLONES int64_t train_group_iris(const Problem& problem, vfloat* theta, vfloat* curves) {
  return train_group<4>(problem, theta, curves);  // the four Iris measurements
}

IRIS_CLONES int64_t train_group_any(const Problem& problem, vfloat* theta, vfloat* curves) {
  return train_group<0>(problem, theta, curves);
}

// Joins every thread of `threads` when it goes out of scope, first telling them to stop
// (`abandon`) if it goes because of an exception: never a joinable std::thread destroyed
// (std::terminate), whatever leaves the scope.
class JoinAll {
 public:
  JoinAll(std::vector<std::thread>& threads, std::atomic<bool>& abandon)
      : threads_(threads), abandon_(abandon), exceptions_(std::uncaught_exceptions()) {}
  JoinAll(const JoinAll&) = delete;
  JoinAll& operator=(const JoinAll&) = delete;
  ~JoinAll() {
    if (std::uncaught_exceptions() > exceptions_) abandon_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  std::vector<std::thread>& threads_;
  std::atomic<bool>& abandon_;
  int exceptions_;
};

}  // namespace

void train_fused(const at::Tensor& x, const at::Tensor& y, const at::Tensor& fc1_weight,
                 const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                 const at::Tensor& fc2_bias, const at::Tensor& curves,
                 const std::string& optimizer, double learning_rate, int64_t epochs,
                 double momentum, double beta1, double beta2, double eps) {
  for (const at::Tensor* t : {&x, &y, &fc1_weight, &fc1_bias, &fc2_weight, &fc2_bias, &curves}) {
    if (!t->device().is_cpu() || t->scalar_type() != at::kFloat || !t->is_contiguous()) {
      throw std::invalid_argument(
          "irismodel fused kernel: every tensor must be contiguous CPU float32");
    }
  }
  const int64_t models = fc1_weight.size(0), h = fc1_weight.size(1), d = fc1_weight.size(2);
  const int64_t n = x.size(0);
  if (x.dim() != 2 || x.size(1) != d || y.numel() != n || fc1_bias.numel() != models * h ||
      fc2_weight.numel() != models * h || fc2_bias.numel() != models || curves.dim() != 2 ||
      curves.size(0) != models || curves.size(1) != epochs) {
    throw std::invalid_argument("irismodel fused kernel: tensor shapes do not agree");
  }
  if (d > kMaxFeatures) {
    throw std::invalid_argument("irismodel fused kernel: at most " +
                                std::to_string(kMaxFeatures) + " features");
  }
  const Rule rule = rule_of(optimizer);
  std::atomic<bool> abandon{false};
  Vectors features(n * d);  // every feature broadcast to all lanes, once for all groups
  const float* x_data = x.data_ptr<float>();
  for (int64_t i = 0; i < n * d; ++i) features[i] = splat(x_data[i]);
  const Problem problem{features.data(), y.data_ptr<float>(), n, d, h, epochs, rule,
                        static_cast<float>(learning_rate), learning_rate, momentum, beta1, beta2,
                        eps, &abandon};
  auto train = d == 4 ? train_group_iris : train_group_any;
  const int64_t count = parameter_count(problem);
  const int64_t groups = (models + kLanes - 1) / kLanes;
  float* w1 = fc1_weight.data_ptr<float>();
  float* b1 = fc1_bias.data_ptr<float>();
  float* w2 = fc2_weight.data_ptr<float>();
  float* b2 = fc2_bias.data_ptr<float>();
  float* out = curves.data_ptr<float>();

  // Groups are independent: workers take them one at a time, each with its own buffers. (Not
  // at::parallel_for: its OpenMP pragma is compiled into this module, which is built without
  // OpenMP, and a second OpenMP runtime beside torch's would fight it for the cores.)
  std::atomic<int64_t> next_group{0}, models_done{0};
  std::atomic<int64_t> stopped_at{epochs};  // the fewest epochs a group stopped after
  auto work = [&]() {
    FlushSubnormals flush;
    Vectors theta(count), losses(epochs);
    for (int64_t group = next_group++; group < groups; group = next_group++) {
      const int64_t first = group * kLanes;
      const int64_t lanes = std::min(kLanes, models - first);
      // gather: padding lanes train an all-zero network, which stays finite and is dropped
      theta.fill(0.0f);
      for (int64_t m = 0; m < lanes; ++m) {
        const int64_t model = first + m;
        for (int64_t i = 0; i < h * d; ++i) theta[i][m] = w1[model * h * d + i];
        for (int64_t j = 0; j < h; ++j) {
          theta[h * d + j][m] = b1[model * h + j];
          theta[h * d + h + j][m] = w2[model * h + j];
        }
        theta[h * (d + 2)][m] = b2[model];
      }
      const int64_t done = train(problem, theta.data(), losses.data());
      if (done < epochs) {  // stopped: this group's models are left as they were
        for (int64_t seen = stopped_at; done < seen;) {
          if (stopped_at.compare_exchange_weak(seen, done)) break;
        }
        return;
      }
      for (int64_t m = 0; m < lanes; ++m) {
        const int64_t model = first + m;
        for (int64_t i = 0; i < h * d; ++i) w1[model * h * d + i] = theta[i][m];
        for (int64_t j = 0; j < h; ++j) {
          b1[model * h + j] = theta[h * d + j][m];
          w2[model * h + j] = theta[h * d + h + j][m];
        }
        b2[model] = theta[h * (d + 2)][m];
        for (int64_t e = 0; e < epochs; ++e) out[model * epochs + e] = losses[e][m];
      }
      models_done += lanes;
    }
  };
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), groups));
  std::vector<std::exception_ptr> errors(workers);
  auto guarded = [&](int64_t worker) {
    try {
      work();
    } catch (...) {
      errors[worker] = std::current_exception();
      abandon = true;  // the others stop before their next epoch
    }
  };
  std::vector<std::thread> threads;
  {
    JoinAll join_all(threads, abandon);
    try {
      for (int64_t worker = 1; worker < workers; ++worker) threads.emplace_back(guarded, worker);
    } catch (...) {  // no thread to be had: the ones started, and this one, do all the groups
    }
    guarded(0);
  }
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  if (stopped_at < epochs) {
    throw TrainingStopped(stopped_at, epochs,
                          std::to_string(models_done) + " of " + std::to_string(models) +
                              " models trained");
  }
}

}  // namespace irismodel
