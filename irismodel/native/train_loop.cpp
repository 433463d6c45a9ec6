// The batched engine's epoch loop (irismodel/engine.py, `_train_chunk`) in C++, op for op.
//
// Every line below calls the ATen op that the matching line of the eager Python loop calls, in
// the same order and with the same arguments, so a model's loss curve and weights are
// bit-identical to the eager engine's. What changes is only the cost around each op: no Python
// frame, no argument parsing, and the GIL released for the whole loop, so that two tasks
// training in two threads run in parallel instead of taking turns on the GIL.
//
// All buffers are allocated (and all views made) by the Python caller and passed in by name;
// this file holds no arithmetic of its own beyond the optimizers' Python-float scalars, which
// it computes with the same IEEE double operations and libm `pow` as CPython does.

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <chrono>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#ifdef __GLIBCXX__
#include <cxxabi.h>  // abi::__forced_unwind
#endif

#include "fused.h"

namespace {

using Buffers = std::map<std::string, at::Tensor>;

at::Tensor need(const Buffers& buffers, const std::string& name) {
  auto found = buffers.find(name);
  if (found == buffers.end()) {
    throw std::invalid_argument("irismodel native loop: missing buffer '" + name + "'");
  }
  return found->second;
}

// irismodel.optimizers.FlatUpdate.step, rule for rule.
class FlatUpdate {
 public:
  FlatUpdate(const Buffers& buffers, std::string name, double learning_rate, double momentum,
             double beta1, double beta2, double eps)
      : name_(std::move(name)),
        params_(need(buffers, "theta")),
        lr_(learning_rate),
        momentum_(momentum),
        beta1_(beta1),
        beta2_(beta2),
        eps_(eps) {
    if (name_ == "adam") {
      exp_avg_ = need(buffers, "exp_avg");
      exp_avg_sq_ = need(buffers, "exp_avg_sq");
      denom_ = need(buffers, "denom");
    } else if (name_ == "manual-no-zero-grad") {
      scaled_ = need(buffers, "scaled");
    } else if (name_ != "sgd" && name_ != "manual" && name_ != "momentum") {
      throw std::invalid_argument("irismodel native loop: unknown optimizer '" + name_ + "'");
    }
  }

  void step(const at::Tensor& grad) {
    const double lr = lr_;
    steps_ += 1;
    if (name_ == "sgd" || name_ == "manual") {
      params_.add_(grad, -lr);
    } else if (name_ == "momentum") {
      if (!buffer_.defined()) {
        buffer_ = grad.clone();
      } else {
        buffer_.mul_(momentum_).add_(grad, 1.0);
      }
      params_.add_(buffer_, -lr);
    } else if (name_ == "adam") {
      const double step = static_cast<double>(steps_);
      exp_avg_.lerp_(grad, 1 - beta1_);
      exp_avg_sq_.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
      const double bias_correction1 = 1 - std::pow(beta1_, step);
      const double bias_correction2 = 1 - std::pow(beta2_, step);
      const double step_size = lr / bias_correction1;
      at::sqrt_out(denom_, exp_avg_sq_);
      denom_.div_(std::pow(bias_correction2, 0.5)).add_(eps_);
      params_.addcdiv_(exp_avg_, denom_, -step_size);
    } else {  // manual-no-zero-grad: `p -= lr * p.grad` on an accumulating `.grad`
      if (!buffer_.defined()) {
        buffer_ = grad.clone();
      } else {
        buffer_.add_(grad);
      }
      at::mul_out(scaled_, buffer_, lr);
      params_.sub_(scaled_);
    }
  }

 private:
  std::string name_;
  at::Tensor params_, buffer_, exp_avg_, exp_avg_sq_, denom_, scaled_;
  double lr_, momentum_, beta1_, beta2_, eps_;
  int64_t steps_ = 0;
};

// Train for `epochs` epochs in place: parameters in buffers["theta"], losses in buffers["curves"].
// Before each epoch, a stop request (irismodel::stop_flag) throws irismodel::TrainingStopped.
void train_epochs(const Buffers& buffers, const std::string& optimizer, double learning_rate,
                  int64_t epochs, int64_t loss_block, int64_t n_rows, double momentum,
                  double beta1, double beta2, double eps) {
  // The caller runs under torch.inference_mode(); this thread's mode carries over, but be
  // explicit so that a direct call cannot record autograd history.
  c10::InferenceMode inference_mode;
  at::Tensor xa_t = need(buffers, "xa_t");    // (D+1, N)
  at::Tensor xa_bt = need(buffers, "xa_bt");  // (k, D+1, N), a view
  at::Tensor y = need(buffers, "y");          // (1, 1, N)
  at::Tensor sign = need(buffers, "sign");    // (1, 1, N)
  at::Tensor grad = need(buffers, "grad");    // flat, like theta
  at::Tensor w1 = need(buffers, "w1");        // (k*H, D+1)
  at::Tensor b2 = need(buffers, "b2");        // (k, 1, 1)
  at::Tensor w2_column = need(buffers, "w2_column");      // (k, H, 1)
  at::Tensor g_b2 = need(buffers, "g_b2");                // (k, 1, 1)
  at::Tensor g_w2_column = need(buffers, "g_w2_column");  // (k, H, 1)
  at::Tensor g_w1_khd = need(buffers, "g_w1_khd");        // (k, H, D+1)
  at::Tensor z1 = need(buffers, "z1");                    // (k*H, N)
  at::Tensor a1 = need(buffers, "a1");                    // (k, H, N)
  at::Tensor dz1 = need(buffers, "dz1");                  // (k, H, N)
  at::Tensor probabilities = need(buffers, "probabilities");  // (k, 1, N)
  at::Tensor dz2 = need(buffers, "dz2");                      // (k, 1, N)
  at::Tensor signed_logits = need(buffers, "signed");         // (B, k, 1, N)
  at::Tensor logits = need(buffers, "logits");                // (B, k, 1, N)
  at::Tensor curves = need(buffers, "curves");                // (E, k)
  at::Tensor g_w1_t = need(buffers, "g_w1_t");                // (k, D+1, H)
  at::Tensor dz1_t = dz1.transpose(1, 2);                      // (k, N, H), a view
  at::Tensor g_w1_t_t = g_w1_t.transpose(1, 2);                // (k, H, D+1), a view
  FlatUpdate update(buffers, optimizer, learning_rate, momentum, beta1, beta2, eps);

  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    if (irismodel::stop_requested()) throw irismodel::TrainingStopped(epoch, epochs);
    const int64_t slot = epoch % loss_block;
    at::Tensor z2 = logits.select(0, slot);  // (k, 1, N)
    at::mm_out(z1, w1, xa_t);
    z1.relu_();
    at::mul_out(dz1, a1, w2_column);
    at::sum_out(z2, dz1, {1}, /*keepdim=*/true);
    z2.add_(b2);
    at::sigmoid_out(probabilities, z2);
    at::sub_out(dz2, probabilities, y).div_(n_rows);
    at::sum_out(g_b2, dz2, {2}, /*keepdim=*/true);
    at::mul_out(dz1, a1, dz2);
    at::sum_out(g_w2_column, dz1, {2}, /*keepdim=*/true);
    at::mul_out(dz1, w2_column, dz2);
    at::threshold_backward_out(dz1, dz1, a1, 0);
    at::bmm_out(g_w1_t, xa_bt, dz1_t);
    g_w1_khd.copy_(g_w1_t_t);
    update.step(grad);
    if (slot == loss_block - 1 || epoch == epochs - 1) {
      const int64_t first = epoch - slot;
      at::Tensor block = signed_logits.slice(0, 0, slot + 1);  // (b, k, 1, N)
      at::mul_out(block, logits.slice(0, 0, slot + 1), sign);
      curves.slice(0, first, epoch + 1).copy_(at::softplus(block, 1, 20).mean({3}).squeeze(2));
    }
  }
}

// Take the GIL back after PyEval_SaveThread. A thread that does so while the interpreter
// finalizes (the main thread left, e.g. on a second Ctrl-C, without waiting for the workers) is
// ended by CPython 3.13 and older with pthread_exit, whose unwinding runs the destructors of
// the call's frames; a tensor that Python holds takes the GIL in its destructor to release its
// Python object, meets pthread_exit again, and inside a destructor that is std::terminate
// ("terminate called without an active exception"). Such a thread sleeps here instead until
// the process exits, as Python 3.14 does. For the same reason the functions run without the GIL
// take tensors by reference: a by-value copy released without the GIL takes the GIL too.
void take_gil_back(PyThreadState* state) {
#ifdef __GLIBCXX__
  try {
    PyEval_RestoreThread(state);
  } catch (abi::__forced_unwind&) {  // never rethrown: this handler never ends
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
#else
  PyEval_RestoreThread(state);
#endif
}

// `function` as a binding that runs it with the GIL released. Not pybind11's
// gil_scoped_release, whose (noexcept) destructor retakes the GIL: see take_gil_back.
template <typename... Args>
auto without_gil(void (*function)(Args...)) {
  return [function](Args... args) {
    PyThreadState* state = PyEval_SaveThread();
    try {
      function(std::forward<Args>(args)...);
    } catch (...) {
      take_gil_back(state);
      throw;
    }
    take_gil_back(state);
  };
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "irismodel's training loops in C++: the eager engine's ops, and the fused kernel";
  // A loop that saw the stop request raises this (engine.py raises TrainingInterrupted from it).
  // pybind11 makes the class once per process; set it on every module object of this library
  // (loading it again gives a new one), not only on the first.
  module.attr("TrainingStopped") = pybind11::register_local_exception<irismodel::TrainingStopped>(
      module, "TrainingStopped", PyExc_RuntimeError);
  // The stop request: a flag that the loops read between epochs, in every thread, without the
  // GIL. Set it from any thread (a SIGINT handler included); it stays set until cleared.
  module.def(
      "request_stop", [] { irismodel::stop_flag = true; },
      "Ask every training of this process to stop before its next epoch.");
  module.def(
      "clear_stop", [] { irismodel::stop_flag = false; },
      "Withdraw the stop request, so that trainings run again.");
  module.def(
      "stop_requested", [] { return irismodel::stop_flag.load(); },
      "Whether a stop request is pending.");
  // Arguments are converted with the GIL held; the loop itself runs without it.
  module.def("train_epochs", without_gil(&train_epochs), pybind11::arg("buffers"),
             pybind11::arg("optimizer"), pybind11::arg("learning_rate"), pybind11::arg("epochs"), pybind11::arg("loss_block"),
             pybind11::arg("n_rows"), pybind11::arg("momentum"), pybind11::arg("beta1"),
             pybind11::arg("beta2"), pybind11::arg("eps"));
  module.def("train_fused", without_gil(&irismodel::train_fused), pybind11::arg("x"),
             pybind11::arg("y"), pybind11::arg("fc1_weight"), pybind11::arg("fc1_bias"),
             pybind11::arg("fc2_weight"), pybind11::arg("fc2_bias"), pybind11::arg("curves"),
             pybind11::arg("optimizer"), pybind11::arg("learning_rate"), pybind11::arg("epochs"),
             pybind11::arg("momentum"), pybind11::arg("beta1"), pybind11::arg("beta2"),
             pybind11::arg("eps"));
}
