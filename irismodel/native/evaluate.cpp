// Evaluating many trained D-H-1 networks at once: their logits, and the counts their metrics
// are made of. Plain C functions called through ctypes, which releases the GIL for the call.
//
// The logits are bit for bit those of the float64 numpy formulation in irismodel/engine/predict.py,
//   hidden = max(einsum("nd,khd->knh", x, w1) + b1, 0)
//   logits = einsum("knh,kh->kn", hidden, w2) + b2
// for C-contiguous arrays. einsum sums each output's products in the order of numpy's x86-64
// baseline kernel (sum_of_products_contig_contig_outstride0_two: SSE2, two lanes, multiply then
// add, unfused): lane l takes the terms l, l + 2, ...; per block of eight terms a lane adds its
// four products last first; past the blocks, one product per lane and pair of terms; then lane 0
// + lane 1 is added to the zero the output starts from. The build passes -ffp-contract=off, so no
// a*b+c is fused here; each row's value is its own IEEE operations, so vectors of rows (whatever
// their width, the instruction set picked at load time) give the same bits. A platform whose
// numpy sums in another order is found out by predict.py, which keeps einsum there.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(_WIN32)
#define IRISMODEL_EXPORT extern "C" __declspec(dllexport)
#else
#define IRISMODEL_EXPORT extern "C" __attribute__((visibility("default")))
#endif
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define IRISMODEL_CLONES __attribute__((target_clones("default", "avx2")))
#else
#define IRISMODEL_CLONES
#endif

namespace {

constexpr int64_t kRows = 4;  // rows side by side in one vector (AVX2's; wider spills)
typedef double vdouble __attribute__((vector_size(kRows * sizeof(double))));
typedef int64_t vlong __attribute__((vector_size(kRows * sizeof(int64_t))));
constexpr int64_t kPairsToSort = 1 << 16;  // more (positive, negative) pairs: rank, not count

// A vector from kRows doubles anywhere in memory (std::vector does not align them to a vector's
// width).
inline vdouble load(const double* values) {
  vdouble vector;
  std::memcpy(&vector, values, sizeof(vector));
  return vector;
}

}  // namespace

// logits (K, N) of K networks on the rows x (N, D): w1 (K, H, D), b1 (K, H), w2 (K, H), b2 (K,),
// all float64 and contiguous.
IRISMODEL_EXPORT IRISMODEL_CLONES void irismodel_logits(const double* x, int64_t n, int64_t d,
                                                        const double* w1, const double* b1,
                                                        const double* w2, const double* b2,
                                                        int64_t k, int64_t h, double* logits) {
  const int64_t vectors = (n + kRows - 1) / kRows;
  std::vector<double> columns(vectors * d * kRows);  // x by feature, rows padded with zeros
  for (int64_t row = 0; row < n; ++row) {  // (V, D, kRows)
    for (int64_t i = 0; i < d; ++i) {
      columns[(row / kRows * d + i) * kRows + row % kRows] = x[row * d + i];
    }
  }
  for (int64_t model = 0; model < k; ++model) {
    const double* weights = w1 + model * h * d;
    const double* outputs = w2 + model * h;
    for (int64_t v = 0; v < vectors; ++v) {
      const double* features = columns.data() + v * d * kRows;
      auto hidden = [&](int64_t unit) {  // relu(first einsum + b1) of one unit, for the rows
        const double* weight = weights + unit * d;
        vdouble lane0 = {}, lane1 = {};
        int64_t i = 0;
        for (; d - i >= 8; i += 8) {
          for (int64_t step = 6; step >= 0; step -= 2) {
            lane0 = load(features + (i + step) * kRows) * weight[i + step] + lane0;
            lane1 = load(features + (i + step + 1) * kRows) * weight[i + step + 1] + lane1;
          }
        }
        for (; i < d; i += 2) {
          lane0 = load(features + i * kRows) * weight[i] + lane0;
          if (i + 1 < d) lane1 = load(features + (i + 1) * kRows) * weight[i + 1] + lane1;
        }  // numpy's 0 * 0 for a missing lane 1 term changes -0 to +0 at most: 0 + ... erases it
        const vdouble value = (0.0 + (lane0 + lane1)) + b1[model * h + unit];
        return value < 0.0 ? vdouble{} : value;  // np.maximum(value, 0): NaN stays NaN
      };
      vdouble lane0 = {}, lane1 = {};
      int64_t unit = 0;
      for (; h - unit >= 8; unit += 8) {
        for (int64_t step = 6; step >= 0; step -= 2) {
          lane0 = hidden(unit + step) * outputs[unit + step] + lane0;
          lane1 = hidden(unit + step + 1) * outputs[unit + step + 1] + lane1;
        }
      }
      for (; unit < h; unit += 2) {
        lane0 = hidden(unit) * outputs[unit] + lane0;
        if (unit + 1 < h) lane1 = hidden(unit + 1) * outputs[unit + 1] + lane1;
      }
      const vdouble out = (0.0 + (lane0 + lane1)) + b2[model];
      const int64_t rows = std::min(kRows, n - v * kRows);
      for (int64_t j = 0; j < rows; ++j) logits[model * n + v * kRows + j] = out[j];
    }
  }
}

// Per model of probabilities (K, N) against `positive` (N,) 0/1 labels: counts (K, 4) =
// predicted positives (p > 0.5) among the positives, among the negatives, twice the
// Mann-Whitney U (pairs of a positive and a negative where the positive scores higher, ties
// counting one half, doubled: an integer), and 1 if every probability is finite, else 0 (and
// no U). Ties are equal float64 values, as in a ranking of them.
IRISMODEL_EXPORT IRISMODEL_CLONES void irismodel_rank_counts(const double* probabilities, int64_t k,
                                                             int64_t n, const uint8_t* positive,
                                                             int64_t* counts) {
  const int64_t n_positive = std::count_if(positive, positive + n, [](uint8_t p) { return p; });
  const int64_t n_negative = n - n_positive;
  const bool sort = n_positive * n_negative > kPairsToSort;
  std::vector<double> positives(n_positive);
  // padded with NaN, which is neither below nor equal to any score
  const int64_t padded = (n_negative + kRows - 1) / kRows * kRows;
  std::vector<double> negatives(padded, NAN);
  double* negative_scores = negatives.data();
  for (int64_t model = 0; model < k; ++model) {
    const double* p = probabilities + model * n;
    int64_t true_positives = 0, false_positives = 0, finite = 1, twice_u = 0;
    for (int64_t row = 0, a = 0, b = 0; row < n; ++row) {
      const double value = p[row];
      finite &= std::isfinite(value);
      if (positive[row]) {
        true_positives += value > 0.5;
        positives[a++] = value;
      } else {
        false_positives += value > 0.5;
        negative_scores[b++] = value;
      }
    }
    if (finite && sort) {
      std::sort(negative_scores, negative_scores + n_negative);
      for (const double score : positives) {
        auto below = std::lower_bound(negative_scores, negative_scores + n_negative, score);
        auto above = std::upper_bound(below, negative_scores + n_negative, score);
        twice_u += 2 * (below - negative_scores) + (above - below);
      }
    } else if (finite) {
      vlong higher = {}, tied = {};
      for (const double score : positives) {
        for (int64_t j = 0; j < padded; j += kRows) {
          const vdouble others = load(negative_scores + j);
          higher -= score > others;  // a true comparison is -1
          tied -= score == others;
        }
      }
      for (int64_t j = 0; j < kRows; ++j) twice_u += 2 * higher[j] + tied[j];
    }
    int64_t* out = counts + 4 * model;
    out[0] = true_positives;
    out[1] = false_positives;
    out[2] = twice_u;
    out[3] = finite;
  }
}
