// The fused CPU kernel (fused.cpp): trains many D-H-1 networks in place, models in SIMD lanes.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace irismodel {

// Train every model of the stacked parameters in place and write their loss curves.
// fc1_weight (K, H, D), fc1_bias (K, H), fc2_weight (K, 1, H), fc2_bias (K, 1), curves (K, E);
// x (N, D) and y (N,); all contiguous CPU float32. Groups of models run in parallel on
// torch.get_num_threads() threads; the caller releases the GIL.
void train_fused(at::Tensor x, at::Tensor y, at::Tensor fc1_weight, at::Tensor fc1_bias,
                 at::Tensor fc2_weight, at::Tensor fc2_bias, at::Tensor curves,
                 const std::string& optimizer, double learning_rate, int64_t epochs,
                 double momentum, double beta1, double beta2, double eps);

}  // namespace irismodel
