// The fused CPU kernel (fused.cpp): trains many D-H-1 networks in place, models in SIMD lanes.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace irismodel {

// The process-wide stop request (irismodel.engine.request_stop): every training loop of this
// module reads it between epochs, without the GIL, and stops when it is set. One definition
// for the whole module (an inline variable); atomic, so any thread, or a signal handler, may
// set it while training threads run.
inline std::atomic<bool> stop_flag{false};

inline bool stop_requested() { return stop_flag.load(std::memory_order_relaxed); }

// Thrown by a loop that saw the stop request; the module raises it in Python as
// `TrainingStopped` (a RuntimeError), which irismodel.engine turns into TrainingInterrupted.
class TrainingStopped : public std::runtime_error {
 public:
  // `epoch` epochs of `epochs` were done when the loop stopped; `detail`, when not empty, is
  // appended in brackets.
  TrainingStopped(int64_t epoch, int64_t epochs, const std::string& detail = "")
      : std::runtime_error("training interrupted by a stop request after epoch " +
                           std::to_string(epoch) + " of " + std::to_string(epochs) +
                           (detail.empty() ? "" : " (" + detail + ")")) {}
};

// Train every model of the stacked parameters in place and write their loss curves.
// fc1_weight (K, H, D), fc1_bias (K, H), fc2_weight (K, 1, H), fc2_bias (K, 1), curves (K, E);
// x (N, D) and y (N,); all contiguous CPU float32. Groups of models run in parallel on
// torch.get_num_threads() threads; the caller releases the GIL. Every thread checks the stop
// request between epochs; when it is set, all of them stop, are joined, and TrainingStopped is
// thrown (the tensors then hold a mix of trained and untrained models).
// Tensors by reference: releasing a copy of a tensor that Python holds takes the GIL (see
// take_gil_back in train_loop.cpp), and this runs without it.
void train_fused(const at::Tensor& x, const at::Tensor& y, const at::Tensor& fc1_weight,
                 const at::Tensor& fc1_bias, const at::Tensor& fc2_weight,
                 const at::Tensor& fc2_bias, const at::Tensor& curves,
                 const std::string& optimizer, double learning_rate, int64_t epochs,
                 double momentum, double beta1, double beta2, double eps);

}  // namespace irismodel
