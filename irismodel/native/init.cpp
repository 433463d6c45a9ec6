// The initial weights of many D-H-1 networks at once, one seed each, in parallel threads.
//
// Seed s gives exactly the weights of `torch.manual_seed(s); NeuralNet(D, H, 1)`:
//  - torch's CPU generator is mt19937 (at::mt19937, ATen/core/MT19937RNGEngine.h) seeded with
//    the low 32 bits of the seed; its first output comes from the first twist of the seeded
//    state;
//  - ATen's CPU `uniform_` for float32 (ATen/native/cpu/DistributionTemplates.h) draws serially,
//    in memory order, one 32-bit output per value: x = its low 24 bits / 2^24, value =
//    x * (to - from) + from, and a value that rounds up to `to` becomes `from`;
//  - nn.Linear draws its weight, then its bias; the network fc1, then fc2. The bounds come from
//    the Python caller (irismodel/initial.py), computed with torch.nn.init's double arithmetic.
// Seeds ride in the lanes of a group, kLanes at a time, so that every step of the generator is
// one loop over the lanes that the compiler vectorizes, and only the state words that the
// draws read are computed (HD + 2H + 1 + 397 of the 624 when that is fewer: H <= 37 at D = 4).
//
// One thing is not fixed by torch's source: whether x * (to - from) + from rounds once or twice.
// ATen compiles that kernel once per instruction set, and the compiler contracts the expression
// to a fused multiply-add where the instruction set has one (AVX2, AVX-512), not in the
// baseline build (ATEN_CPU_CAPABILITY=default). The caller finds out which one this torch runs
// (irismodel.initial.torch_uniform_rounding) and passes `fused`.
//
// Called through ctypes (a plain C function: this file needs no Python binding, and ctypes
// releases the GIL for the call); it never throws: an error comes back as a message.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#if defined(_WIN32)
#define IRISMODEL_EXPORT extern "C" __declspec(dllexport)
#else
#define IRISMODEL_EXPORT extern "C" __attribute__((visibility("default")))
#endif

namespace {

constexpr int64_t kLanes = 16;  // seeds per group: a state of 624 x 16 words is 39 KB
// A thread takes tens of microseconds to start, a group a few: a thread is started only for
// this many groups (256 seeds) or more.
constexpr int64_t kGroupsPerThread = 16;
constexpr int64_t kStateWords = 624, kShift = 397;  // mt19937's N and M
constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;

struct Problem {
  const uint64_t* seeds;
  int64_t models, d, h;
  double bounds[4];  // fc1.weight, fc1.bias, fc2.weight, fc2.bias
  bool fused;
  float* out[4];  // (K, H, D), (K, H), (K, 1, H), (K, 1)
};

// One group's generators: the state, row by row, each row one word per lane.
struct Lanes {
  uint32_t (*state)[kLanes];  // (624, kLanes)
  uint32_t (*draws)[kLanes];  // (draws, kLanes): tempered outputs, in the order drawn
};

// at::mt19937's init_with_uint32, for rows [0, rows) only.
void seed_state(uint32_t (*state)[kLanes], const uint32_t* words, int64_t rows) {
  for (int64_t l = 0; l < kLanes; ++l) state[0][l] = words[l];
  for (int64_t j = 1; j < rows; ++j) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint32_t previous = state[j - 1][l];
      state[j][l] = 1812433253u * (previous ^ (previous >> 30)) + static_cast<uint32_t>(j);
    }
  }
}

// at::mt19937's next_state, for rows [0, rows) only: row i reads rows i, i + 1 and
// (i + 397) mod 624, which past the end is a row of the new state, already made.
void twist(uint32_t (*state)[kLanes], int64_t rows) {
  for (int64_t i = 0; i < rows; ++i) {
    const uint32_t* following = state[i + 1 < kStateWords ? i + 1 : 0];
    const uint32_t* far = state[(i + kShift) % kStateWords];
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint32_t mixed = (state[i][l] & kUpper) | (following[l] & kLower);
      state[i][l] = far[l] ^ (mixed >> 1) ^ ((following[l] & 1u) ? kMatrixA : 0u);
    }
  }
}

void temper(const uint32_t* row, uint32_t* out) {
  for (int64_t l = 0; l < kLanes; ++l) {
    uint32_t y = row[l];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    out[l] = y;
  }
}

// The first `count` outputs of every lane's generator into draws.
void generate(const Lanes& lanes, const uint32_t* words, int64_t count) {
  const int64_t first = std::min(count, kStateWords);
  seed_state(lanes.state, words, first > kStateWords - kShift ? kStateWords : first + kShift);
  for (int64_t done = 0; done < count; done += kStateWords) {
    const int64_t rows = std::min(count - done, kStateWords);
    twist(lanes.state, rows);
    for (int64_t r = 0; r < rows; ++r) temper(lanes.state[r], lanes.draws[done + r]);
  }
}

// `uniform_(-bound, bound)`'s float32 value of one output, as ATen's uniform_kernel makes it.
inline float uniform(uint32_t draw, float from, float to, float span, bool fused) {
  // at::transformation::uniform_real's x: exact, a multiple of 2^-24 in [0, 1)
  const float x = static_cast<float>(draw & 0xffffffu) * (1.0f / 16777216.0f);
  // Fused: x * span + from rounded once. In double it is exact (x and span have 24 significant
  // bits, the product 48; with from = -span / 2 the sum needs at most 49), so one rounding to
  // float gives fmaf's result without a libm call. Separate: two float roundings (this file is
  // built with -ffp-contract=off, so the compiler does not fuse them).
  const float value =
      fused ? static_cast<float>(static_cast<double>(x) * span + from) : x * span + from;
  return value == to ? from : value;
}

void initialize_group(const Problem& p, const Lanes& lanes, int64_t group) {
  const int64_t first = group * kLanes;
  const int64_t used = std::min(kLanes, p.models - first);
  uint32_t words[kLanes] = {};  // padding lanes run seed 0 and are dropped
  for (int64_t l = 0; l < used; ++l) words[l] = static_cast<uint32_t>(p.seeds[first + l]);
  const int64_t sizes[4] = {p.h * p.d, p.h, p.h, 1};
  generate(lanes, words, sizes[0] + sizes[1] + sizes[2] + sizes[3]);
  int64_t drawn = 0;
  for (int part = 0; part < 4; ++part) {
    const float from = static_cast<float>(-p.bounds[part]);
    const float to = static_cast<float>(p.bounds[part]);
    const float span = to - from;
    for (int64_t l = 0; l < used; ++l) {
      float* out = p.out[part] + (first + l) * sizes[part];
      for (int64_t i = 0; i < sizes[part]; ++i) {
        out[i] = uniform(lanes.draws[drawn + i][l], from, to, span, p.fused);
      }
    }
    drawn += sizes[part];
  }
}

void copy_message(const char* text, char* message, int64_t capacity) {
  if (capacity <= 0) return;
  std::strncpy(message, text, static_cast<size_t>(capacity - 1));
  message[capacity - 1] = '\0';
}

}  // namespace

// Fill the four stacked parameters of `models` networks, model k from seeds[k] (a uint64, as
// torch.manual_seed reads it), on up to `threads` threads; bounds as nn.Linear's, `fused` as
// described at the top. All buffers are contiguous and allocated by the caller. Returns 0, or
// 1 with the error's text in `message` (at most `capacity` bytes with its NUL).
IRISMODEL_EXPORT int irismodel_initial_weights(
    const uint64_t* seeds, int64_t models, int64_t d, int64_t h, double w1_bound,
    double b1_bound, double w2_bound, double b2_bound, int fused, float* w1, float* b1, float* w2,
    float* b2, int64_t threads, char* message, int64_t capacity) {
  try {
    const Problem problem{seeds, models, d, h, {w1_bound, b1_bound, w2_bound, b2_bound},
                          fused != 0, {w1, b1, w2, b2}};
    const int64_t count = h * d + 2 * h + 1;
    const int64_t groups = (models + kLanes - 1) / kLanes;
    std::atomic<int64_t> next_group{0};
    std::atomic<bool> failed{false};
    const int64_t workers =
        std::max<int64_t>(1, std::min(threads, groups / kGroupsPerThread));
    std::vector<std::exception_ptr> errors(workers);
    auto work = [&](int64_t worker) {
      try {
        std::vector<uint32_t> state(kStateWords * kLanes), draws(count * kLanes);
        const Lanes lanes{reinterpret_cast<uint32_t(*)[kLanes]>(state.data()),
                          reinterpret_cast<uint32_t(*)[kLanes]>(draws.data())};
        for (int64_t group = next_group++; group < groups && !failed; group = next_group++) {
          initialize_group(problem, lanes, group);
        }
      } catch (...) {
        errors[worker] = std::current_exception();
        failed = true;
      }
    };
    std::vector<std::thread> helpers;
    try {
      for (int64_t worker = 1; worker < workers; ++worker) helpers.emplace_back(work, worker);
    } catch (...) {  // no thread to be had: the ones started, and this one, do all the groups
    }
    work(0);
    for (std::thread& helper : helpers) helper.join();
    for (const std::exception_ptr& error : errors) {
      if (error) std::rethrow_exception(error);
    }
    return 0;
  } catch (const std::exception& error) {
    copy_message(error.what(), message, capacity);
  } catch (...) {
    copy_message("unknown C++ exception", message, capacity);
  }
  return 1;
}
