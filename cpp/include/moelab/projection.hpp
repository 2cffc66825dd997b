// A dense projection y = x W^T with the weight read in place (float32 or bfloat16), threaded
// and deterministic: the one entry point the token mixers use for their linear layers.
#pragma once

#include "moelab/types.hpp"
#include "moelab/weights.hpp"

namespace moelab {

// y (n, N) = x (n, K) . W^T for a 2-D weight W (N, K); rows of y are ldy apart (ldy >= N).
// Work is cut by shape (token panels or row blocks x output tiles), never by thread count, and
// each output element is one sum in a fixed order: the result is bitwise the same for any
// number of threads. Throws std::bad_alloc if the packing buffer cannot be allocated; nothing
// throws inside the parallel region.
void project(const float* x, Index n, const Tensor& W, float* y, Index ldy);

}  // namespace moelab
